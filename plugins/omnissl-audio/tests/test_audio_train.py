"""Recipes validate, and a tiny `omnissl train` of the demo writes the full run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "src" / "omnissl_audio" / "recipes" / "audio").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_validates_and_names_its_command(path: Path) -> None:
    recipe = load_recipe(f"audio/{path.stem}", [], get_registry())
    assert recipe.raw["modality"]["name"] == "audio"
    assert recipe.raw["modality"]["num_mel_bins"] == recipe.raw["data"]["num_mel_bins"]
    assert path.read_text().startswith(f"# omnissl train audio/{path.stem}")


def test_demo_trains_end_to_end_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    code = main(["train", "audio/mae-demo", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.voices=[en-us,en+f4,en-029]", "data.speeds=[140]", "data.pitches=[30,70]",
                 "train.steps=40", "train.batch_size=16", "train.log_every=5", "train.val_every=20",
                 "train.ckpt_every=20", "optim.warmup_steps=5", "viz.num_samples=3",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json", "audio_stats.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 40 and "val_loss" in records[-1]
    assert records[-1]["loss"] < 0.9 * records[0]["loss"]  # the reconstruction loss goes down
    stats = json.loads((out / "audio_stats.json").read_text())
    assert stats["num_clips"] == 60 and stats["frontend"]["num_mel_bins"] == 64 and stats["std"] > 0
    probe = json.loads((out / "probe.json").read_text())
    assert set(probe) >= {"pretrained", "random", "baseline"}
    # the voices are the groups: one of the three (20 clips) is held out whole
    assert probe["num_test"] == 20 and probe["split"]["kind"] == "grouped"
    assert (probe["split"]["held_out_groups"], probe["split"]["groups_on_both_sides"]) == (1, 0)
