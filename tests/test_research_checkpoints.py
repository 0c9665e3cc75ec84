"""Kept checkpoints: written atomically, verified, and probed in step order (omnissl probe --all-checkpoints)."""

import json

import pytest
import torch

from omnissl.cli import main
from omnissl.errors import OmnisslError, TrainingError
from omnissl.eval.probe import probe_checkpoints
from omnissl.eval.run import load_run
from omnissl.plugins import get_registry, load_plugins
from omnissl.recipe import load_recipe
from omnissl.research.checkpoints import keep_checkpoint, kept_checkpoints, load_kept_encoder
from omnissl.research.compare import compare_runs
from omnissl.train import train
from omnissl.train.checkpoint import load_checkpoint

TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=16", "optim.warmup_steps=1",
        "train.log_every=1", "viz.enabled=false", "train.val_batches=1", "probe.max_samples=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # train.keep_checkpoints=3 with checkpoints every 9 steps: keeping does not follow ckpt_every
    out = tmp_path_factory.mktemp("research") / "run"
    recipe = load_recipe("image/mae-digits", [*TINY, "train.steps=9", "train.ckpt_every=9", "train.val_every=6",
                                              "train.keep_checkpoints=3"], get_registry())
    train(recipe, get_registry(), out)
    return out


def test_kept_checkpoints_are_atomic_verified_and_encoder_only(run, tmp_path):
    kept = kept_checkpoints(run)
    assert [step for step, _ in kept] == [3, 6, 9]
    assert not list((run / "checkpoints").glob(".*.tmp"))  # no temporary file left behind
    state = load_checkpoint(kept[-1][1])  # its digest is checked on load
    assert state["step"] == 9 and all(k.startswith("encoder.") for k in state["model"])
    _, _, final = load_run(run, load_plugins())
    _, _, encoder = load_run(run, load_plugins())
    assert load_kept_encoder(kept[0][1], encoder) == 3
    assert not all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), final.state_dict().values()))
    assert load_kept_encoder(kept[-1][1], encoder) == 9
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), final.state_dict().values()))
    assert keep_checkpoint(encoder.state_dict(), 10, tmp_path, every=3) is None  # not a multiple: nothing kept
    assert keep_checkpoint(encoder.state_dict(), 10, tmp_path, every=None) is None
    with torch.no_grad():
        next(iter(encoder.parameters())).fill_(float("nan"))
    with pytest.raises(TrainingError, match="NaN or infinity"):
        keep_checkpoint(encoder.state_dict(), 12, tmp_path, every=3)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_probe_all_checkpoints_in_step_order_and_compare(run, tmp_path, capsys):
    records = probe_checkpoints(run, load_plugins())
    assert [r["step"] for r in records] == [3, 6, 9]
    logged = {r["step"]: r["val_loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if "val_loss" in r}
    assert [r["val_loss"] for r in records] == [None, logged[6], logged[9]]  # step 3 had no validation
    assert all(0 <= r["linear"] <= 1 and r["metric"] == "accuracy" and r["num_test"] > 0 for r in records)
    assert main(["probe", str(run), "--all-checkpoints"]) == 0  # appends: now two lines per step
    lines = [json.loads(line) for line in (run / "probes.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [3, 6, 9, 3, 6, 9]
    assert lines[3:] == lines[:3]  # the same checkpoints probe the same
    assert "appended to" in capsys.readouterr().out
    comparison = compare_runs([run])
    assert [(p.step, p.kind) for p in comparison.points] == [(3, "checkpoint"), (6, "checkpoint"), (9, "checkpoint")]
    assert comparison.overall.rho is None and "too few points (2" in comparison.overall.note
    with pytest.raises(OmnisslError, match="takes neither --test"):
        from omnissl.cli import _cmd_probe, _parser

        _cmd_probe(_parser().parse_args(["probe", str(run), "--all-checkpoints", "--label-fractions", "0.5"]))


def test_probe_all_checkpoints_needs_kept_ones(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(OmnisslError, match="train with train.keep_checkpoints=N"):
        probe_checkpoints(tmp_path, load_plugins())
