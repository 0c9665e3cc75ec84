"""Every recipe validates; a tiny run of the demo through the CLI writes the run folder and learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import header_command, load_recipe, recipe_index

RECIPES = Path(__file__).parents[1] / "src" / "omnissl_eeg" / "recipes" / "eeg"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_eeg_recipe_validates(path: Path):
    registry = get_registry()
    assert f"eeg/{path.stem}" in recipe_index(registry)
    recipe = load_recipe(str(path), [], registry)
    assert recipe.raw["modality"]["name"] == "eeg"
    assert header_command(path).startswith(f"omnissl train eeg/{path.stem}")


def test_eeg_demo_trains_through_the_cli(tmp_path: Path, eeg_raw):
    out = tmp_path / "run"
    code = main(["train", "eeg/mae-demo", "train.steps=40", "train.log_every=10", "train.val_every=40",
                 "train.batch_size=32", "encoder.depth=2", "optim.warmup_steps=5", "modality.target=both",
                 "--out", str(out)])
    assert code == 0
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    for r in records:  # each stream's loss is logged, and they add up to the total (spectral_weight 1)
        assert abs(r["loss_values"] + r["loss_spectrum"] - r["loss"]) < 1e-4 * r["loss"], r
    probe = json.loads((out / "probe.json").read_text())
    assert probe["metric"] == "balanced_accuracy" and set(probe) >= {"pretrained", "random", "baseline"}
    # features of the pre-trained encoder: the run's trials, and another montage the user brings
    from omnissl_eeg import EEGRecordings

    from omnissl.eval.run import run_features

    own = run_features(out)
    assert own.shape == (561, 64) and np.isfinite(own).all()
    mine = EEGRecordings([eeg_raw], names=["mine"], sfreq=200.0, window_seconds=3.5, reject=None, notch=None,
                         l_freq=None, h_freq=40.0, reference=None)  # 14 channels, not the run's 6
    features = run_features(out, mine, pool="mean_max")
    assert features.shape == (len(mine), 128) and np.isfinite(features).all()
    assert features.std(0).mean() > 0  # windows differ
