"""End to end: recipes validate, a tiny ``omnissl train`` of the demo writes the run folder,
its loss goes down, and its encoder exports to MONAI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNETR, ViT

from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe, recipe_index

RECIPES = ["ct/ibot-demo", "ct/mae-demo", "ct/mae-unetr-demo", "ct/mae-vit-base", "ct/simmim-base",
           "ct/simmim-demo"]


def test_every_ct_recipe_is_installed_and_valid():
    registry = get_registry()
    assert sorted(name for name in recipe_index(registry) if name.startswith("ct/")) == RECIPES
    for name in RECIPES:
        recipe = load_recipe(name, [], registry)
        assert recipe.raw["modality"]["name"] == "ct"
        first = Path(recipe.source).read_text().splitlines()[0]
        assert first.startswith(f"# omnissl train {name}")


@pytest.fixture(scope="module")
def ct_tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ct-run")
    out = root / "run"
    code = main(["train", "ct/mae-demo",
                 f"data.cache_dir={root / 'cache'}", "data.n=30", "data.shape=[24,24,24]", "data.real_volumes=false",
                 "modality.crop_size=16", "modality.patch_size=8",
                 "encoder.dim=32", "encoder.depth=1", "encoder.heads=2",
                 "objective.decoder_dim=16", "objective.decoder_depth=1", "objective.decoder_heads=2",
                 "train.steps=40", "train.batch_size=8", "train.log_every=5", "train.val_every=20",
                 "train.ckpt_every=20", "optim.warmup_steps=5", "probe.knn_k=3", "viz.num_samples=2", "--out", str(out)])
    assert code in (0, None)
    return out


def test_tiny_training_writes_the_run_folder(ct_tiny_run):
    for name in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/encoder.safetensors",
                 "loss_curve.png", "reconstruction.png", "probe.json"):
        assert (ct_tiny_run / name).is_file(), name
    probe = json.loads((ct_tiny_run / "probe.json").read_text())
    assert {"pretrained", "random", "baseline"} <= set(probe) and probe["task"] == "classification"


def test_loss_goes_down(ct_tiny_run):
    records = [json.loads(line) for line in (ct_tiny_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 4 and losses[-1] < 0.7 * losses[0]


def test_cli_export_of_the_run_loads_into_a_monai_vit(ct_tiny_run, tmp_path, capsys):
    out = tmp_path / "vit.pt"
    assert main(["export", str(ct_tiny_run), "--to", "monai-vit", "--out", str(out)]) == 0
    info = json.loads(Path(f"{out}.json").read_text())
    vit = ViT(in_channels=1, **info["vit_kwargs"])
    vit.load_state_dict(torch.load(out, weights_only=True))
    features, _ = vit(torch.rand(1, 1, 16, 16, 16))
    assert features.shape == (1, 8, 32)
    assert main(["export", str(ct_tiny_run), "--to", "monai-unetr", "--out", str(tmp_path / "u.pt")]) == 2
    assert "monai-vit" in capsys.readouterr().err  # the error says what to do instead


def test_unetr_demo_trains_and_exports_into_unetr(tmp_path):
    """ct/mae-unetr-demo's encoder as shipped (16³ patches, 12 blocks), 2 steps on a few phantoms,
    then `omnissl export --to monai-unetr` loads into MONAI's UNETR with nothing missing."""
    run = tmp_path / "run"
    code = main(["train", "ct/mae-unetr-demo", f"data.cache_dir={tmp_path / 'cache'}", "data.n=6",
                 "data.real_volumes=false", "data.val_fraction=0", "train.steps=2", "train.batch_size=4",
                 "train.log_every=1", "optim.warmup_steps=1", "viz.enabled=false", "--no-probe", "--out", str(run)])
    assert code in (0, None)
    out = tmp_path / "unetr_vit.pt"
    assert main(["export", str(run), "--to", "monai-unetr", "--out", str(out)]) == 0
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["unetr_kwargs"]["img_size"] == [48, 48, 48] and info["vit_kwargs"]["num_layers"] == 12
    net = UNETR(in_channels=1, out_channels=2, feature_size=8, **info["unetr_kwargs"])
    missing, unexpected = net.vit.load_state_dict(torch.load(out, weights_only=True), strict=True)
    assert missing == [] and unexpected == []
    with torch.no_grad():
        assert net(torch.rand(1, 1, 48, 48, 48)).shape == (1, 2, 48, 48, 48)
