"""Fine-tuning (omnissl finetune), layer-wise lr decay, mixup / cutmix, L2-SP, label fractions,
and probes on data the user chooses.

The commands run through ``omnissl.cli.main`` in this process (each ``python -m omnissl`` costs
seconds of imports), except the run that SIGKILL ends, which needs a process of its own.
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

from omnissl.cli import main
from omnissl.encoders import TokenEncoder
from omnissl.errors import OmnisslError, RecipeError
from omnissl.objectives.finetune import Finetune
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train import train
from omnissl.tokens import CoordGroup, TokenBatch, TokenSpec
from omnissl.train.data import label_subset
from omnissl.train.optim import param_groups

TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=64", "optim.warmup_steps=2",
        "viz.enabled=false", "probe.enabled=false"]


def omnissl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m omnissl ARGS``, a process of its own."""
    return subprocess.run([sys.executable, "-m", "omnissl", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``omnissl ARGS`` in this process: its exit code, stdout and stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A short pre-training run of the digits with a tiny encoder."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    registry = get_registry()
    train(load_recipe("image/mae-digits", [*TINY, "train.steps=30", "train.val_every=0"], registry), registry, out)
    return out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_finetune_learns_beats_chance_and_reports_like_probes(run, tmp_path, capsys):
    out = tmp_path / "ft"
    code, stdout, stderr = cli(capsys, "finetune", str(run), "train.steps=80", "train.log_every=5", "optim.lr=5e-3",
                               "--label-fractions", "0.1,1", "--out", str(out))
    assert code == 0, stderr
    report = json.loads((out / "finetune.json").read_text())
    assert report["metric"] == "accuracy" and report["task"] == "classification"
    assert report["split"]["kind"] == "random" and report["split"]["held_out"] == 359
    assert set(report["label_fractions"]) == {"0.1", "1"}
    tenth, full = report["label_fractions"]["0.1"], report["label_fractions"]["1"]
    assert tenth["num_train"] == 143 and full["num_train"] == 1438  # 10 % of each class of the 1,438
    assert full["num_test"] == 359
    for row in (tenth, full):
        for kind in ("pretrained", "scratch"):
            assert 0.0 <= row[kind]["finetune"] <= 1.0 and "finetune_balanced_accuracy" in row[kind]
    assert full["pretrained"]["finetune"] > 0.25  # chance is 0.1
    assert report["pretrained"] == full["pretrained"]  # probe.json's layout at the top, for the full set
    assert (out / "label_efficiency.png").is_file()
    # each side is an ordinary run folder of the one loop; loss falls below its first epoch's
    rows = records(out / "1" / "pretrained")
    per_epoch = 1438 // 64
    first_epoch = np.mean([r["loss"] for r in rows if r["step"] <= per_epoch])
    assert np.mean([r["loss"] for r in rows[-3:]]) < 0.9 * first_epoch
    tuned = (out / "1" / "pretrained" / "recipe.yaml").read_text()
    scratch = (out / "1" / "scratch" / "recipe.yaml").read_text()
    assert "encoder.safetensors" in tuned and "init: null" in scratch and "name: none" in tuned
    summary = json.loads((out / "0.1" / "pretrained" / "data.json").read_text())
    assert summary["split"]["labelled_train"] == 143 and summary["split"]["label_fraction"] == 0.1
    assert "pretrained finetune" in stdout and "scratch finetune" in stdout


KILLER = """
    import os
    import signal

    from omnissl import hookimpl

    @hookimpl
    def omnissl_log(step):
        if step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
"""


def test_finetune_resumes_exactly_after_sigkill(run, tmp_path, capsys):
    args = ("train.steps=12", "train.ckpt_every=4", "train.log_every=1", "train.val_every=6", "objective.mixup=0.8",
            "objective.cutmix=1.0", "--no-compare-scratch")
    straight = tmp_path / "straight"
    assert cli(capsys, "finetune", str(run), *args, "--out", str(straight))[0] == 0
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(textwrap.dedent(KILLER))
    killed = tmp_path / "killed"
    env = {"OMNISSL_PLUGINS": "killer", "KILL_AT_STEP": "10", "PYTHONPATH": f"{plugins}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    assert omnissl("finetune", str(run), *args, "--out", str(killed), env=env).returncode == -9
    code, _, stderr = cli(capsys, "finetune", str(run), *args, "--out", str(killed))
    assert code == 2 and "--resume" in stderr
    code, _, stderr = cli(capsys, "finetune", str(run), *args, "--out", str(killed), "--resume")
    assert code == 0, stderr
    drop = lambda rs: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rs]  # noqa: E731
    assert [r["step"] for r in records(killed / "pretrained")] == list(range(1, 13))
    assert drop(records(killed / "pretrained")) == drop(records(straight / "pretrained"))
    a, b = (json.loads((d / "finetune.json").read_text()) for d in (straight, killed))
    assert a["pretrained"] == b["pretrained"]


def test_finetune_errors_name_the_problem(run, tmp_path, capsys):
    from omnissl.cli import main

    def error(*args: str) -> str:
        with pytest.raises(SystemExit) if "--label-fractions" in args else _nothing():
            assert main(["finetune", *args]) == 2
        return capsys.readouterr().err

    assert "not a run folder" in error(str(tmp_path), "--out", str(tmp_path / "x"))
    assert "command-line override 'objective.label_smoothing=1.5'" in error(
        str(run), "objective.label_smoothing=1.5", "--out", str(tmp_path / "y"))
    assert "fractions must be in (0, 1]" in error(str(run), "--label-fractions", "0,1", "--out", str(tmp_path / "z"))
    assert not (tmp_path / "y").exists()  # refused before anything was written


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def grid_batch(b: int = 4, side: int = 4, dim: int = 3) -> TokenBatch:
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    coords = torch.stack([ys, xs], -1).reshape(1, -1, 2).float().expand(b, -1, -1).clone()
    values = torch.arange(b, dtype=torch.float32)[:, None, None].expand(-1, side * side, dim).clone()
    return TokenBatch(values=values, coords=coords, pad=torch.zeros(b, side * side, dtype=torch.bool),
                      labels=torch.tensor([0.0, 1.0, 2.0, float("nan")])[:b].double())


def make(**options) -> Finetune:
    spec = TokenSpec(3, (CoordGroup("grid", 2),))
    torch.manual_seed(0)
    return Finetune(TokenEncoder(spec, dim=16, depth=2, heads=2), None, num_outputs=3, **options)


def test_mixup_and_cutmix_blend_tokens_and_targets():
    model = make(mixup=0.8, cutmix=1.0, label_smoothing=0.0)
    batch = grid_batch()
    targets = model.targets(batch.labels.float().nan_to_num(0.0))
    known = torch.isfinite(batch.labels)
    torch.manual_seed(3)
    for _ in range(20):
        values, mixed, keep = model.mix(batch, targets, known)
        assert torch.allclose(mixed.sum(-1), torch.ones(4))  # still distributions over classes
        assert keep.tolist() == [False, True, True, False]  # a pair with an unlabelled sample is not scored
        # each token holds its own sample's value, the partner's (the batch reversed), or a blend;
        # the share of the partner's value equals the weight of the partner's label
        share = (values[..., 0] - batch.values[..., 0]) / (batch.values.flip(0)[..., 0] - batch.values[..., 0])
        partner = 1.0 - mixed[1, 1].item()  # sample 1 (class 1) pairs with sample 2 (class 2)
        assert torch.allclose(share[1].mean(), torch.tensor(partner), atol=1e-5)
    model.mixup = 0.0  # cutmix alone: whole tokens move, a box of grid coordinates
    values, mixed, _ = model.mix(batch, targets, known)
    moved = values[1, :, 0] != 1.0
    cells = batch.coords[0][moved]
    if len(cells):
        box = (cells.amin(0), cells.amax(0))
        inside = ((batch.coords[0] >= box[0]) & (batch.coords[0] <= box[1])).all(-1)
        assert torch.equal(inside, moved)  # exactly the tokens of one axis-aligned box
    assert mixed[1, 1].item() == pytest.approx(1.0 - moved.float().mean().item())


def test_mixing_needs_aligned_tokens_and_cutmix_needs_a_grid():
    model = make(mixup=1.0)
    batch = grid_batch()
    batch.pad[0, -1] = True
    with pytest.raises(RecipeError, match="tokens at the same coordinates"):
        model.mix(batch, torch.zeros(4, 3), torch.ones(4, dtype=torch.bool))
    spec = TokenSpec(3, (CoordGroup("continuous", 2),))
    cloud = Finetune(TokenEncoder(spec, dim=16, depth=1, heads=2), None, num_outputs=3, cutmix=1.0)
    with pytest.raises(RecipeError, match="use objective.mixup instead"):
        cloud.box(grid_batch(), 0.5)


def test_loss_ignores_unlabelled_samples_and_checks_classes():
    model = make()
    out = model(grid_batch())
    assert torch.isfinite(out.loss) and out.loss > 0
    batch = grid_batch()
    batch.labels[0] = 5.0
    with pytest.raises(Exception, match=r"labels \[5\] are not classes 0..2"):
        model(batch)


def test_l2_sp_anchors_at_the_start_and_is_not_checkpointed():
    model = make(l2_sp=0.1)
    assert not any(k.startswith("l2sp_") for k in model.state_dict())
    assert model(grid_batch()).metrics["l2_sp"].item() == 0.0
    with torch.no_grad():
        model.encoder.value_embed.weight.add_(0.5)
    drift = model(grid_batch()).metrics["l2_sp"].item()
    assert drift == pytest.approx(0.25 * model.encoder.value_embed.weight.numel(), rel=1e-4)
    groups = param_groups(model, 0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert not any(id(p) in decayed for p in model.encoder.parameters())  # pulled to the start, not to 0
    assert id(model.head.weight) in decayed


def test_layer_decay_scales_each_block():
    model = make()
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    depth = model.encoder.depth  # 2: embeddings 0.5^3, block 0 0.5^2, block 1 0.5, head 1
    assert scale[id(model.encoder.value_embed.weight)] == 0.5 ** (depth + 1)
    assert scale[id(model.encoder.blocks.blocks[0].attn.qkv.weight)] == 0.5 ** depth
    assert scale[id(model.encoder.blocks.blocks[1].mlp.fc1.weight)] == 0.5
    assert scale[id(model.head.weight)] == 1.0 and scale[id(model.encoder.blocks.norm.weight)] == 1.0
    plain = param_groups(model, 0.05)  # off: the two groups of before, no scale
    assert len(plain) == 2 and "lr_scale" not in plain[0]


def test_label_subset_keeps_every_class_and_is_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3 + [np.nan] * 5)
    indices = np.arange(len(labels))
    chosen = label_subset(labels, indices, 0.1, seed=0, task="classification")
    counts = np.bincount(labels[chosen].astype(int))
    assert counts.tolist() == [5, 3, 1]  # round(0.1 * n), at least one of each class; no unlabelled
    assert np.array_equal(chosen, label_subset(labels, indices, 0.1, seed=0, task="classification"))
    assert not np.array_equal(chosen, label_subset(labels, indices, 0.1, seed=1, task="classification"))
    assert len(label_subset(labels, indices, 1.0, 0, "classification")) == 83
    assert len(label_subset(np.linspace(0, 1, 100), np.arange(100), 0.01, 0, "regression")) == 2


def test_probe_on_another_data_set_with_a_test_set_and_label_fractions(run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = np.array([f"digit{d}" for d in digits.target])
    np.savez(tmp_path / "train.npz", images=digits.images[:1200] / 16, labels=names[:1200])
    test = np.isin(digits.target[1200:], [3, 7])  # a test set with two of the classes: indices remapped
    np.savez(tmp_path / "test.npz", images=digits.images[1200:][test] / 16, labels=names[1200:][test])
    out = tmp_path / "custom.json"
    code, _, stderr = cli(capsys, "probe", str(run), "data.name=numpy", f"data.path={tmp_path / 'train.npz'}",
                          "--test", f"data.path={tmp_path / 'test.npz'}", "--label-fractions", "0.05,1",
                          "--out", str(out))
    assert code == 0, stderr
    report = json.loads(out.read_text())
    assert report["split"]["kind"] == "test set" and report["num_train"] == 1200
    assert report["num_test"] == int(test.sum())
    assert report["pretrained"]["linear"] > 0.6  # 3 and 7 found among ten classes: labels were remapped
    assert set(report["label_fractions"]) == {"0.05", "1"}
    assert report["label_fractions"]["0.05"]["num_train"] == 60
    assert (tmp_path / "label_efficiency.png").is_file() and not (run / "probe.json").exists()
    code, _, stderr = cli(capsys, "probe", str(run), "encoder.dim=8")
    assert code == 2 and "'encoder.dim=8' would change the pre-trained encoder" in stderr


def test_probe_pools_as_the_modality_reads_out_and_random_features(run, monkeypatch):
    from omnissl_image.modality import ImageModality

    from omnissl.eval.run import probe_setup, run_features
    from omnissl.eval.probe import encode
    from omnissl.plugins import get_registry

    monkeypatch.setattr(ImageModality, "readout", "max")
    setup = probe_setup(run, get_registry())
    assert setup.pool == "max"
    assert probe_setup(run, get_registry(), ["probe.pool=mean"]).pool == "mean"
    random = run_features(run, init="random")
    pretrained = run_features(run)
    assert random.shape == pretrained.shape == (1797, 32) and not np.allclose(random, pretrained)
    direct = encode(setup.random_init, setup.tokens, np.arange(5), 5, torch.device("cpu"), "max")
    np.testing.assert_allclose(random[:5], direct, rtol=1e-4, atol=1e-5)  # the probes' random encoder
    with pytest.raises(OmnisslError, match="'pretrained' or 'random'"):
        run_features(run, init="scratch")


def test_finetune_trains_on_the_training_side_of_the_split_it_is_scored_on(run):
    """A run that held nothing out (val_fraction 0) is scored on 20 %: fine-tuning must not train on it."""
    from omnissl.eval.finetune import _base_recipe, _recipe
    from omnissl.eval.run import evaluation_split
    from omnissl.plugins import get_registry
    from omnissl.recipe import apply_overrides, validate
    from omnissl.train.data import held_out_split
    from omnissl_image.datasets import DigitsDataset

    registry = get_registry()
    base, source = _base_recipe(run, registry)
    base = apply_overrides(base, ["data.val_fraction=0", "train.seed=3"])
    probe_recipe = validate(base, registry, source)
    tuned = _recipe(base, source, registry, ["train.seed=5"], {"task": "classification", "num_outputs": 10},
                    probe_recipe, init=None, fraction=1.0, n_train=1000)
    assert tuned.get("data", "val_fraction") == 0.2 and tuned.get("data", "split_seed") == 3
    digits = DigitsDataset()
    scored = evaluation_split(probe_recipe, digits)
    trained = held_out_split(digits, tuned.get("data", "val_fraction"), tuned.get("data", "split_seed"),
                             tuned.get("data", "split"))
    assert np.array_equal(trained.held_out, scored.held_out) and len(scored.held_out) == 359
