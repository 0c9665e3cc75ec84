"""End-to-end training through the CLI on the real digits: layout, loss, resume, failures.

Each ``python -m omnissl`` costs seconds of imports, so runs whose process does not matter (the
uninterrupted reference of the resume test, a second seed) train in this process; the runs that
are killed, resumed, or whose exit code and message are the promise go through the CLI.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.cli import main
from omnissl.errors import OmnisslError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train import train as train_here

TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=32", "optim.warmup_steps=2",
        "train.log_every=1", "viz.num_samples=4"]


def train(out: Path, *overrides: str, plugins: str = "", plugin_dir: Path | None = None,
          resume: bool = False, **env_vars: str) -> subprocess.CompletedProcess:
    """``python -m omnissl train image/mae-digits`` with the tiny encoder (a process of its own)."""
    env = dict(os.environ, OMNISSL_PLUGINS=plugins, **env_vars)
    if plugin_dir is not None:
        env["PYTHONPATH"] = f"{plugin_dir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "omnissl", "train", "image/mae-digits", *TINY, *overrides, "--out", str(out)]
    return subprocess.run(command + (["--resume"] if resume else []), capture_output=True, text=True, env=env,
                          timeout=600)


def in_process(out: Path, *overrides: str) -> None:
    """The same run as :func:`train`, in this process."""
    registry = get_registry()
    train_here(load_recipe("image/mae-digits", [*TINY, *overrides], registry), registry, out)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_speed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]


def test_run_folder_layout_loss_falls_and_probes(tmp_path):
    out = tmp_path / "run"
    result = train(out, "train.steps=60", "train.val_every=30", "train.ckpt_every=30", "probe.max_samples=400")
    assert result.returncode == 0, result.stderr
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json"):
        assert (out / name).is_file(), name
    rows = records(out)
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert all("loss" in r for r in rows) and [r["step"] for r in rows if "val_loss" in r] == [30, 60]
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    probe = json.loads((out / "probe.json").read_text())
    assert probe["metric"] == "accuracy"
    for column in ("pretrained", "random", "baseline"):
        assert set(probe[column]) == {"linear", "knn"} and 0.0 <= probe[column]["linear"] <= 1.0
    assert "pretrained" in result.stdout and "baseline" in result.stdout  # the table is printed
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 60
    # the pre-trained encoder's features, for the run's data and for samples the user brings
    from omnissl_image.datasets import DigitsDataset

    from omnissl.eval.run import load_run, run_features
    from omnissl.plugins import get_registry

    features = run_features(out)
    assert features.shape == (1797, 32) and np.isfinite(features).all()
    mine = [DigitsDataset()[i] for i in (0, 5, 9)]  # any list of sample dicts
    _, modality, encoder = load_run(out, get_registry())
    batch = modality.on_device(collate_tokens([modality.tokenize(sample, None) for sample in mine]))
    with torch.no_grad():
        direct = encoder.eval().pool(encoder.forward_batch(batch), batch.pad, "mean_max")
    np.testing.assert_allclose(run_features(out, mine, pool="mean_max"), direct.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features[[0, 5, 9]], direct[:, :32].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_features(out, data=["data.val_fraction=0.5"]), features, rtol=1e-5, atol=1e-6)
    again, meta = run_features(out, metadata=True)  # what joins each row back to its sample
    np.testing.assert_allclose(again, features, rtol=1e-5, atol=1e-6)
    assert meta["labels"].tolist() == DigitsDataset().labels.tolist()
    with pytest.raises(OmnisslError, match=r"data section only; got \['train.steps=3'\]"):
        run_features(out, data=["train.steps=3"])

KILLER = """
    import os
    import signal

    from omnissl import hookimpl

    @hookimpl
    def omnissl_log(step):
        if step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a pre-empted job
"""


RESUME = ("train.steps=12", "train.ckpt_every=4", "train.val_every=6", "probe.enabled=false",
          "viz.enabled=false", "modality.crop_scale=[0.5, 1.0]")


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict:
    """An uninterrupted run (in this process); the same run through the CLI, killed with SIGKILL
    as step 10 is logged (checkpoint at 8), then continued with ``--resume`` through the CLI."""
    root = tmp_path_factory.mktemp("resume")
    in_process(root / "straight", *RESUME)
    (root / "plugins").mkdir()
    (root / "plugins" / "killer.py").write_text(textwrap.dedent(KILLER))
    out = root / "killed"
    result = train(out, *RESUME, plugins="killer", plugin_dir=root / "plugins", KILL_AT_STEP="10")
    assert result.returncode == -9, result.stderr
    saved_step = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    before_resume = records(out)
    resumed = train(out, *RESUME, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    return {"straight": records(root / "straight"), "before_resume": before_resume, "saved_step": saved_step,
            "resumed": records(out), "root": root}


def test_killed_run_resumes_exactly(killed):
    assert killed["saved_step"] == 8
    assert [r["step"] for r in killed["resumed"]] == list(range(1, 13))
    assert without_speed(killed["resumed"]) == without_speed(killed["straight"])


def test_same_seed_same_curve_and_other_seed_differs(killed):
    """The CLI run (a fresh process, up to its kill) logs the in-process run's losses exactly; another
    seed logs other losses."""
    losses = [r["loss"] for r in killed["before_resume"]]
    assert len(losses) >= 9 and losses == [r["loss"] for r in killed["straight"][:len(losses)]]
    other = killed["root"] / "seed1"
    in_process(other, *RESUME, "train.seed=1")
    assert [r["loss"] for r in records(other)] != [r["loss"] for r in killed["straight"]]


NAN_OBJECTIVE = """
    import torch

    from omnissl import hookimpl
    from omnissl.objectives import MAE


    class NanAfterFive(MAE):
        calls = 0

        def forward(self, batch, mask):
            out = super().forward(batch, mask)
            NanAfterFive.calls += 1
            if NanAfterFive.calls >= 5:
                out.loss = out.loss * torch.tensor(float("nan"))
            return out

    @hookimpl
    def omnissl_objectives():
        return {"nan_after_five": NanAfterFive}
"""


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nan_objective.py").write_text(textwrap.dedent(NAN_OBJECTIVE))
    out = tmp_path / "run"
    result = train(out, "objective.name=nan_after_five", "train.steps=10", "train.ckpt_every=2",
                   plugins="nan_objective", plugin_dir=tmp_path / "plugins")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "loss became nan at step 5" in result.stderr
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


def test_existing_run_needs_resume_flag(tmp_path, capsys):
    out = tmp_path / "run"
    in_process(out, "train.steps=2", "probe.enabled=false")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", "image/mae-digits", *TINY, "train.steps=2", "--out", str(out)]) == 2
    assert "add --resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
