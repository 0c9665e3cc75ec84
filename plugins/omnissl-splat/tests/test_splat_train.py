"""Recipes validate; a tiny end-to-end `omnissl train` writes the run folder; the loss goes down."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.build import build_all
from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train.data import TokenDataset, step_generator
from omnissl_splat.diagnose import diagnose, format_report
from omnissl_splat.losses import LOSS_TERMS

RECIPES = sorted(p.stem for p in (Path(__file__).parents[1] / "src" / "omnissl_splat" / "recipes" / "splat").glob("*.yaml"))
TINY = ["modality.num_points=64", "modality.num_groups=8", "modality.group_size=8", "modality.embed_hidden=16",
        "encoder.dim=32", "encoder.depth=1", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=8"]


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_validates(name: str) -> None:
    recipe = load_recipe(f"splat/{name}", [], get_registry())
    assert recipe.component("modality")[0] == "splat"
    text = (Path(__file__).parents[1] / "src" / "omnissl_splat" / "recipes" / "splat" / f"{name}.yaml").read_text()
    assert text.startswith(f"# omnissl train splat/{name}")


def test_tiny_demo_run_writes_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNISSL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    main(["train", "splat/mae-demo", "data.per_class=6", "data.num_gaussians=96", "data.min_points=64", *TINY,
          "train.steps=4", "train.log_every=2", "train.val_every=4", "train.ckpt_every=4", "probe.knn_k=3",
          "viz.num_samples=3", "--out", str(out)])
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4 and np.isfinite(records[-1]["val_loss"])
    probe = json.loads((out / "probe.json").read_text())
    assert {"pretrained", "random", "baseline"} <= set(probe)
    # The per-term diagnosis reads the same folder (python -m omnissl_splat.diagnose).
    report = diagnose(out)
    for scores in report["terms"].values():
        assert set(scores) == set(LOSS_TERMS) and all(np.isfinite(v) for v in scores.values())
    assert set(report["nuisance_r2"]) == {"pretrained", "random"}
    assert all(set(r2) == {"colour", "scale"} for r2 in report["nuisance_r2"].values())
    assert "object colour" in format_report(report)


def test_loss_goes_down_on_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNISSL_CACHE", str(tmp_path / "cache"))
    registry = get_registry()
    recipe = load_recipe("splat/mae-demo", ["data.per_class=2", "data.num_gaussians=96", "data.min_points=64",
                                            *TINY], registry)
    torch.manual_seed(0)
    parts = build_all(recipe, registry)
    tokens = TokenDataset(parts.dataset, parts.modality)
    batch = parts.modality.on_device(collate_tokens([tokens[(i, None)] for i in range(8)]))
    mask = parts.masker(batch, step_generator(0, 0))
    optimizer = torch.optim.AdamW(parts.objective.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = parts.objective(batch, mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
