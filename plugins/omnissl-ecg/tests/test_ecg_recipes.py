"""Every recipe validates; the demo trains and probes through the CLI on the real example records, and
ECG-JEPA's recipe trains a few steps on a folder of real records of 1, 3, 8 and 12 leads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import header_command, load_recipe, recipe_index

RECIPES = Path(__file__).parents[1] / "src" / "omnissl_ecg" / "recipes" / "ecg"
RUN_FILES = ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors", "loss_curve.png")


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_ecg_recipe_validates(path: Path):
    registry = get_registry()
    assert f"ecg/{path.stem}" in recipe_index(registry)
    recipe = load_recipe(str(path), [], registry)
    assert recipe.raw["modality"]["name"] == "ecg"
    assert header_command(path).startswith(f"omnissl train ecg/{path.stem}")


def test_ecg_demo_trains_and_probes_on_real_records(tmp_path: Path):
    """The demo on its 12-lead records and the BITalino one (the long PLUX recordings cost a cold
    cache ~20 s of beat detection): the held-out side keeps whole records."""
    out = tmp_path / "run"
    code = main(["train", "ecg/mae-demo", "data.sources=[ecgprocess,pyhrv]", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.steps=30", "train.batch_size=4", "train.log_every=10", "train.val_every=30",
                 "train.ckpt_every=30", "optim.warmup_steps=5", "probe.knn_k=2", "--out", str(out)])
    assert code == 0
    for name in (*RUN_FILES, "reconstruction.png", "probe.json"):
        assert (out / name).is_file(), name
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    probe = json.loads((out / "probe.json").read_text())
    assert probe["task"] == "regression" and set(probe) >= {"pretrained", "random", "baseline"}
    assert probe["split"]["groups_on_both_sides"] == 0 and probe["split"]["held_out_groups"] == 2


def test_ecg_jepa_recipe_trains_a_few_steps(mixed_folder: Path, tmp_path: Path):
    out = tmp_path / "jepa"
    code = main(["train", "ecg/jepa-base", f"data.root={mixed_folder}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.window_seconds=2.0", "data.num_workers=0", "data.val_fraction=0.25", "encoder.size=tiny",
                 "encoder.dim=32", "encoder.depth=1", "encoder.heads=2", "objective.pred_dim=16",
                 "objective.pred_depth=1", "objective.pred_heads=2", "train.steps=3", "train.batch_size=4",
                 "train.micro_batch_size=null", "train.val_every=3", "train.ckpt_every=3", "train.log_every=1",
                 "optim.warmup_steps=1", "--out", str(out)])
    assert code == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 3 and all(np.isfinite(losses))
