"""`omnissl export --to timm`: timm's ViT loads the weights strictly and gives omnissl's features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from omnissl.cli import main
from omnissl.eval.run import load_run, run_features
from omnissl.plugins import get_registry

TINY = ["train.steps=2", "encoder.depth=2", "encoder.dim=48", "encoder.heads=3", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "optim.warmup_steps=1", "probe.enabled=false",
        "viz.enabled=false", "train.log_every=1"]


def numpy_images(path: Path, count: int, size: int, channels: int) -> Path:
    rng = np.random.default_rng(size + channels)
    shape = (count, size, size) if channels == 1 else (count, size, size, channels)
    images = (rng.random(shape) * 255).astype(np.uint8)
    np.savez(path, images=images, labels=np.arange(count) % 2)
    return path


# (recipe overrides, image size, patch size, channels): RGB and grey, two patch sizes and sizes
CASES = {
    "digits-grey-8px-patch2": (["image/mae-digits", "train.batch_size=16"], 8, 2, 1),
    "rgb-24px-patch8": (["image/mae-digits", "data.name=numpy", "modality.channels=3", "modality.image_size=24",
                         "modality.patch_size=8", "modality.mean=null", "modality.std=null", "encoder.size=small",
                         "train.batch_size=8"], 24, 8, 3),
}


@pytest.mark.parametrize("case", CASES)
def test_timm_loads_strictly_and_matches_features(case: str, tmp_path: Path) -> None:
    overrides, size, patch, channels = CASES[case]
    recipe, *rest = overrides
    if "data.name=numpy" in rest:
        rest.append(f"data.path={numpy_images(tmp_path / 'images.npz', 24, 20, channels)}")  # resized to 24
    run = tmp_path / "run"
    assert main(["train", recipe, *TINY, *rest, "--out", str(run)]) in (0, None)
    out = tmp_path / "vit.safetensors"
    assert main(["export", str(run), "--to", "timm", "--out", str(out)]) == 0
    info = json.loads(Path(f"{out}.json").read_text())
    kwargs = info["create_model_kwargs"]
    assert (kwargs["img_size"], kwargs["patch_size"], kwargs["in_chans"]) == (size, patch, channels)
    assert kwargs["fc_norm"] is False and kwargs["class_token"] is False and kwargs["global_pool"] == "avg"
    assert info["model_name"].startswith("vit_") and timm.is_model(info["model_name"])
    model = timm.create_model(info["model_name"], **kwargs).eval()
    missing, unexpected = model.load_state_dict(load_file(out), strict=True)
    assert missing == [] and unexpected == []

    registry = get_registry()
    loaded, modality, _ = load_run(run, registry)
    from omnissl.build import build_dataset

    dataset = build_dataset(loaded, registry)
    samples = [dataset[i] for i in range(min(12, len(dataset)))]
    ours = run_features(run, samples, pool="mean")  # omnissl's pooled features
    images = torch.stack([modality.prepare(sample, None) for sample in samples])  # the documented input
    with torch.no_grad():
        theirs = model(images).numpy()
    assert theirs.shape == ours.shape == (len(samples), 48)
    assert np.abs(theirs - ours).max() < 1e-4
    assert info["max_abs_difference"] < 1e-4
    # timm's own preprocessing config is omnissl's: mean, std, size, squash-resize
    config = timm.data.resolve_data_config(model=model)
    assert tuple(config["input_size"]) == (channels, size, size) and config["crop_mode"] == "squash"
    np.testing.assert_allclose(config["mean"], modality.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(config["std"], modality.std.numpy(), rtol=1e-6)
    # a .pt name gets a torch.save of plain tensors, loadable without pickle's code paths
    pt = tmp_path / "vit.pt"
    assert main(["export", str(run), "--to", "timm", "--out", str(pt)]) == 0
    model.load_state_dict(torch.load(pt, weights_only=True), strict=True)
