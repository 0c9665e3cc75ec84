"""The core's fault matrix (docs/reliability.md): no bad state is saved, no run folder is damaged.

Each test names the item of the reliability issue it covers. Runs are in-process and tiny
(digits, a 2-block encoder, a few steps); the CLI is called where its exit code and
message are the promise.
"""

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import yaml

from omnissl import hookimpl
from omnissl.cli import main
from omnissl.errors import OmnisslError, RecipeError, TrainingError
from omnissl.eval.run import probe_setup
from omnissl.plugins import get_registry, load_plugins
from omnissl.recipe import load_recipe
from omnissl.train import checkpoint as ckpt
from omnissl.train import train
from omnissl.train.checkpoint import load_checkpoint, load_weights, save_checkpoint

TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=16", "optim.warmup_steps=2",
        "train.log_every=1", "probe.enabled=false", "viz.enabled=false", "data.val_fraction=0.05",
        "train.val_batches=1"]


def recipe(*overrides: str):
    return load_recipe("image/mae-digits", [*TINY, *overrides], get_registry())


def run(out: Path, *overrides: str, **flags):
    return train(recipe(*overrides), get_registry(), out, **flags)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def folder_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


class StopAt(Exception):
    pass


class Crash:
    """A plugin that crashes the run when step ``at`` is logged (after earlier checkpoints)."""

    def __init__(self, at: int):
        self.at = at

    @hookimpl
    def omnissl_log(self, step):
        if step == self.at:
            raise StopAt(step)


@pytest.fixture
def crash_at():
    manager = get_registry().manager
    plugins = []

    def install(step: int | None) -> None:  # replaces the crash installed before, if any (None: no crash)
        while plugins:
            manager.unregister(plugins.pop())
        if step is None:
            return
        plugins.append(Crash(step))
        manager.register(plugins[-1])

    yield install
    while plugins:
        manager.unregister(plugins.pop())


# -- 1. a non-finite gradient is never applied, never saved ------------------------------------------

NAN_GRAD = """
    import torch

    from omnissl import hookimpl
    from omnissl.objectives import MAE


    class NanGradAfterFour(MAE):
        calls = 0

        def forward(self, batch, mask):
            out = super().forward(batch, mask)
            NanGradAfterFour.calls += 1
            if NanGradAfterFour.calls >= 5:  # finite loss, NaN gradient: d sqrt(x)/dx at 0, times 0
                weight = self.decoder_embed.weight
                out.loss = out.loss + 0.0 * torch.sqrt(weight.sum() * 0.0)
            return out

    @hookimpl
    def omnissl_objectives():
        return {"nan_grad_after_four": NanGradAfterFour}
"""


def cli(out: Path, *args: str, plugins: str = "", plugin_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMNISSL_PLUGINS=plugins)
    if plugin_dir is not None:
        env["PYTHONPATH"] = f"{plugin_dir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "omnissl", "train", "image/mae-digits", *TINY, *args, "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_non_finite_gradient_is_not_applied_nor_saved_and_the_message_points_at_a_good_checkpoint(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nan_grad.py").write_text(textwrap.dedent(NAN_GRAD))
    out = tmp_path / "run"
    result = cli(out, "objective.name=nan_grad_after_four", "train.steps=10", "train.ckpt_every=2",
                 plugins="nan_grad", plugin_dir=tmp_path / "plugins")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "gradient norm became nan" in result.stderr and "at step 5" in result.stderr
    assert f"the last good state is {out / 'checkpoints' / 'last.pt'} (step 4): continue from it with --resume " \
        "--allow-recipe-change" in result.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")  # finite, verified
    assert state["step"] == 4
    # ... and the run goes on from it once the cause is gone, as the message says (in this process:
    # the flags are train()'s arguments; each `python -m omnissl` costs seconds of imports).
    run(out, "train.steps=10", "train.ckpt_every=2", resume=True, allow_recipe_change=True)
    assert [r["step"] for r in records(out)] == list(range(1, 11))


def test_a_failure_before_the_first_checkpoint_says_there_is_none(tmp_path):
    """In this process (the test above covers the CLI's exit code and message for this error)."""
    nan_grad = types.ModuleType("nan_grad")
    exec(compile(textwrap.dedent(NAN_GRAD), "<nan_grad>", "exec"), nan_grad.__dict__)
    registry = load_plugins([nan_grad])
    overrides = [*TINY, "objective.name=nan_grad_after_four", "train.steps=10", "train.ckpt_every=8"]
    with pytest.raises(TrainingError, match="gradient norm became nan") as info:
        train(load_recipe("image/mae-digits", overrides, registry), registry, tmp_path / "run")
    assert "no checkpoint was written yet: start again with --overwrite" in str(info.value)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_non_finite_states_are_neither_written_nor_loaded(tmp_path):
    model = {"w": torch.tensor([1.0, float("nan")])}
    with pytest.raises(TrainingError, match=r"refusing to write .*: model.w holds NaN"):
        save_checkpoint({"step": 3, "model": model}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())
    torch.save({"step": 3, "model": model}, tmp_path / "old.pt")  # as an older omnissl wrote it
    with pytest.raises(TrainingError, match=r"holds NaN or infinity in model.w; it cannot be resumed"):
        load_checkpoint(tmp_path / "old.pt")


# -- 2. a resume that does not fit changes nothing in the folder ----------------------------------------

def test_resume_with_other_shapes_or_another_runs_recipe_leaves_the_folder_intact(tmp_path):
    out = tmp_path / "run"
    run(out, "train.steps=2", "train.ckpt_every=2")
    before = folder_digest(out)
    with pytest.raises(TrainingError, match=r"encoder.dim 32 -> 64.*add --allow-recipe-change"):
        run(out, "train.steps=2", "encoder.dim=64", resume=True)
    with pytest.raises(TrainingError, match=r"does not fit this recipe's model: .*shapes differ \(first: "
                                            r"encoder\.\S+ is \[\d+(, \d+)*\] there"):
        run(out, "train.steps=2", "encoder.dim=64", resume=True, allow_recipe_change=True)
    assert folder_digest(out) == before
    # a run folder of another modality: refused by name, before anything is built
    other = load_recipe("splat/mae-demo", [], get_registry()) if "splat/mae-demo" in _recipes() else None
    if other is not None:
        with pytest.raises(TrainingError, match=r"modality.name 'image' -> 'splat'"):
            train(other, get_registry(), out, resume=True)
    assert folder_digest(out) == before
    assert len(probe_setup(out, get_registry()).train_idx) > 0  # the folder still works


def _recipes() -> set[str]:
    from omnissl.recipe import recipe_index
    return set(recipe_index(get_registry()))


# -- 3. recipe changes on resume: refused unless asked for, and recorded ---------------------------------

def test_recipe_changes_on_resume_are_refused_unless_allowed_and_kept_in_a_history(tmp_path, crash_at):
    out = tmp_path / "run"
    crash_at(3)
    with pytest.raises(StopAt):
        run(out, "train.steps=6", "train.ckpt_every=2")
    for change in ("optim.lr=0.002", "masker.ratio=0.6", "modality.crop_scale=[0.5,1.0]"):
        with pytest.raises(TrainingError, match=rf"{change.split('=')[0]} .* -> .*--allow-recipe-change"):
            run(out, "train.steps=6", "train.ckpt_every=2", change, resume=True)
    # logging and checkpoint cadence do not change the weights: no flag needed, still recorded
    crash_at(6)  # after the checkpoint at step 4
    with pytest.raises(StopAt):
        run(out, "train.steps=6", "train.ckpt_every=2", "train.log_every=2", resume=True)
    crash_at(None)
    run(out, "train.steps=6", "train.ckpt_every=2", "train.log_every=2", "optim.lr=0.002", resume=True,
        allow_recipe_change=True)
    history = yaml.safe_load((out / "recipe_history.yaml").read_text())
    assert [entry["step"] for entry in history] == [0, 2, 4]
    assert history[1]["changed"] == {"train.log_every": [1, 2]}
    assert history[2]["changed"]["optim.lr"][1] == 0.002
    assert history[2]["recipe"]["optim"]["lr"] == 0.002 and history[0]["recipe"]["optim"]["lr"] != 0.002
    assert yaml.safe_load((out / "recipe.yaml").read_text())["optim"]["lr"] == 0.002


# -- 4. a partial last line in metrics.jsonl -------------------------------------------------------------

def test_a_cut_metrics_line_is_dropped_with_a_warning(tmp_path, crash_at):
    out = tmp_path / "run"
    crash_at(3)
    with pytest.raises(StopAt):
        run(out, "train.steps=4", "train.ckpt_every=2")
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "loss": 0.3')  # the crash cut this record short
    crash_at(None)
    with pytest.warns(UserWarning, match=r"metrics.jsonl, line 4: dropping a record that was not written"):
        run(out, "train.steps=4", "train.ckpt_every=2", resume=True)
    assert [r["step"] for r in records(out)] == [1, 2, 3, 4]


# -- 5. logged losses after a resume equal an uninterrupted run's -----------------------------------------

def test_logged_record_after_resume_is_identical_when_ckpt_every_is_not_a_multiple_of_log_every(tmp_path,
                                                                                               crash_at):
    args = ("train.steps=9", "train.log_every=3", "train.ckpt_every=4")
    straight = tmp_path / "straight"
    run(straight, *args)
    crash_at(6)
    with pytest.raises(StopAt):
        run(tmp_path / "resumed", *args)
    assert torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)["step"] == 4
    crash_at(None)
    run(tmp_path / "resumed", *args, resume=True)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]
    assert strip(records(tmp_path / "resumed")) == strip(records(straight))


# -- 6. a full disk -----------------------------------------------------------------------------------------

def test_a_full_disk_keeps_the_previous_checkpoint_and_removes_the_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_until_the_disk_fills(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"\0" * 1000)  # part of the file reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_until_the_disk_fills)
    with pytest.raises(TrainingError) as info:
        run(out, "train.steps=4", "train.ckpt_every=2")
    message = str(info.value)
    assert f"no space left on the disk of {out / 'checkpoints'} while writing {out / 'checkpoints/last.pt'}" \
        in message and f"the previous checkpoint at {out / 'checkpoints/last.pt'} is intact" in message
    assert "Traceback" not in message and sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2


def test_disk_full_anywhere_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "metrics.jsonl"))

    monkeypatch.setattr("omnissl.train.train", full)
    assert main(["train", "image/mae-digits", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omnissl: error: no space left on the disk while writing") and "Traceback" not in err


# -- 7. checksums, atomic weights, no pickle -----------------------------------------------------------------

def test_corrupted_checkpoint_bytes_are_found(tmp_path):
    pattern = torch.arange(4096, dtype=torch.float32)
    path = save_checkpoint({"step": 1, "model": {"w": pattern}}, tmp_path / "last.pt")
    data = bytearray(path.read_bytes())
    at = data.find(pattern[1000:1004].numpy().tobytes())
    data[at] ^= 0xFF  # one flipped bit pattern inside the tensor's bytes
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["step"] == 1  # torch itself does not notice
    with pytest.raises(TrainingError, match=r"last.pt is corrupted: its bytes no longer match the SHA-256"):
        load_checkpoint(path)


def test_encoder_weights_are_safetensors_written_atomically_and_verified(tmp_path):
    out = tmp_path / "run"
    run(out, "train.steps=2")
    weights = load_weights(out / "checkpoints" / "encoder.safetensors")
    model = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    assert weights.keys() == {k[len("encoder."):] for k in model if k.startswith("encoder.")}
    assert all(torch.equal(v, model[f"encoder.{k}"]) for k, v in weights.items())
    assert (out / "checkpoints" / "encoder.safetensors").read_bytes()[8:9] == b"{"  # a JSON header, no pickle
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_a_file_that_needs_code_to_load_is_refused_without_suggesting_to_disable_safety(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"step": 1, "model": {}, "extra": Path("x")}, path)  # any object beyond tensors and plain values
    with pytest.raises(TrainingError) as info:
        load_checkpoint(path)
    assert "is not a checkpoint omnissl trusts" in str(info.value)
    assert "weights_only=False" not in str(info.value) and info.value.__cause__ is None


# -- 8. an existing run is never overwritten silently -------------------------------------------------------

def test_a_folder_with_a_run_needs_resume_or_overwrite(tmp_path, crash_at):
    out = tmp_path / "run"
    crash_at(1)
    with pytest.raises(StopAt):
        run(out, "train.steps=4", "train.ckpt_every=2")  # stopped before its first checkpoint
    before = folder_digest(out)
    with pytest.raises(OmnisslError, match=r"already holds a run \(recipe.yaml, recipe_history.yaml, "
                                           r"data.json, metrics.jsonl.*add --resume .*--overwrite"):
        run(out, "train.steps=4")
    with pytest.raises(OmnisslError, match=r"cannot --resume .*no checkpoint .*--overwrite"):
        run(out, "train.steps=4", resume=True)
    assert folder_digest(out) == before
    (out / "notes.txt").write_text("mine")
    crash_at(None)
    run(out, "train.steps=2", overwrite=True)
    assert [r["step"] for r in records(out)] == [1, 2] and (out / "notes.txt").read_text() == "mine"


# -- 9, 10. every numeric option's range, before anything heavy; 1e-3 is a number ---------------------------

@pytest.mark.parametrize("override,message", [
    ("train.ckpt_every=0", "train.ckpt_every must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("train.log_every=-1", "train.log_every must be >= 1, got -1"),
    ("train.val_batches=0", "train.val_batches must be >= 1, got 0"),
    ("optim.lr=-1", "optim.lr must be > 0, got -1"),
    ("optim.lr=.nan", "optim.lr must be > 0, got nan"),
    ("optim.betas=[2,3]", "optim.betas must be >= 0 and < 1, got [2, 3]"),
    ("data.num_workers=-1", "data.num_workers must be >= 0, got -1"),
    ("modality.crop_scale=[1.5,0.1]", "modality.crop_scale must be > 0 and <= 1, in ascending order, got [1.5, 0.1]"),
    ("train.clip_grad=-1", "train.clip_grad must be > 0, got -1"),
    ("optim.warmup_steps=-10", "optim.warmup_steps must be >= 0, got -10"),
    ("train.micro_batch_size=0", "train.micro_batch_size must be >= 1, got 0"),
    ("masker.ratio=1.5", "masker.ratio must be > 0 and < 1, got 1.5"),
    ("optim.weight_decay=.inf", "optim.weight_decay must be >= 0, got inf"),
])
def test_out_of_range_values_are_refused_with_their_origin(override, message):
    with pytest.raises(RecipeError) as info:
        recipe(override)
    assert f"command-line override '{override}': {message}" in str(info.value)


def test_out_of_range_in_a_file_names_the_line(tmp_path):
    text = Path(load_recipe("image/mae-digits", [], get_registry()).source).read_text()
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("  ckpt_every: 500", "  ckpt_every: 0"))
    line = path.read_text().splitlines().index("  ckpt_every: 0") + 1
    with pytest.raises(RecipeError, match=rf"r.yaml, line {line}: train.ckpt_every must be >= 1, got 0"):
        load_recipe(str(path), [], get_registry())


def test_an_exponent_without_a_dot_is_a_number(tmp_path):
    assert recipe("optim.lr=1e-3").optim.lr == 0.001
    path = tmp_path / "r.yaml"
    text = Path(load_recipe("image/mae-digits", [], get_registry()).source).read_text()
    path.write_text(text.replace("  lr: 1.0e-3", "  lr: 2E-4"))
    assert load_recipe(str(path), [], get_registry()).optim.lr == 2e-4
    assert recipe("description=1e5x").raw["description"] == "1e5x"  # not every digit string is a number
