"""Every shipped recipe validates; a tiny end-to-end `omnissl train` of the demo writes the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import header_command, load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "src" / "omnissl_molecule" / "recipes" / "molecule").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_names_its_command(path):
    registry = get_registry()
    recipe = load_recipe(f"molecule/{path.stem}", [], registry)
    assert recipe.raw["modality"]["name"] == "molecule"
    assert header_command(path).startswith(f"omnissl train molecule/{path.stem}")


def test_demo_trains_end_to_end_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "molecule/mae-demo", "train.steps=4", "train.batch_size=16", "train.log_every=2",
                 "train.val_every=4", "train.val_batches=1", "encoder.dim=32", "encoder.depth=1",
                 "data.files=[freesolv.csv]", f"data.cache_dir={tmp_path / 'cache'}", "probe.knn_k=5",
                 "viz.num_samples=4", "--out", str(out)])
    assert code == 0
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4 and "val_loss" in records[-1]
    report = json.loads((out / "probe.json").read_text())
    assert report["task"] == "regression" and set(report) >= {"pretrained", "random", "baseline"}
    assert "linear_rmse" in report["baseline"]
    assert "baseline" in capsys.readouterr().out
