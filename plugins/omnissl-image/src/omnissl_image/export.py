"""Hand a pre-trained image encoder to timm: ``omnissl export RUN --to timm --out vit.safetensors``.

omnissl's encoder over image patches is timm's ``VisionTransformer`` without a class token
(Dosovitskiy et al., ICLR 2021; He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022): the value embedding is a linear map of each patch flattened
channel-first, (C, p, p) in C order, which is exactly timm's ``Conv2d`` patch embedding
with weight (dim, C, p, p); the fixed 2-D sin-cos positions, computed from each patch's
(row, column), become timm's ``pos_embed`` for the recipe's image size (timm flattens the
patch grid row-major, as the image modality does); the blocks are timm's own ``Block`` (same
names, LayerNorm eps 1e-6); the final LayerNorm is timm's ``norm``; the image readout is the
mean over tokens. timm's ViT with ``global_pool="avg"`` applies its norm *after* pooling
(``fc_norm``) unless ``fc_norm=False``, so the export asks for ``fc_norm=False``: norm on
every token, then the mean, as omnissl does. Pooled features then agree to float rounding
(the exporter checks it on every export, below 1e-4).

The exact call, for a run of ``image/mae-vit-base`` (224-pixel RGB, 16-pixel patches)::

    import json, timm
    from safetensors.torch import load_file

    info = json.load(open("vit.safetensors.json"))
    model = timm.create_model(info["model_name"], **info["create_model_kwargs"])
    # = timm.create_model("vit_base_patch16_224", num_classes=0, img_size=224, patch_size=16, in_chans=3,
    #       embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, class_token=False,
    #       global_pool="avg", fc_norm=False,
    #       pretrained_cfg_overlay={"input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406],
    #                               "std": [0.229, 0.224, 0.225], "interpolation": "bicubic",
    #                               "crop_pct": 1.0, "crop_mode": "squash"})
    model.load_state_dict(load_file("vit.safetensors"), strict=True)
    features = model(images)   # (B, 768): omnissl's pooled features

Input: what the image modality feeds its encoder, ``ImageModality.prepare(sample, None)``:
``in_chans`` channels (grey images are the ITU-R 601 luma of RGB, 0.299 R + 0.587 G + 0.114 B;
a grey image is repeated for RGB), scaled to [0, 1], resized to ``img_size`` x ``img_size``
(bicubic, antialiased, aspect not kept: timm's ``crop_mode="squash"``), then normalised per
channel with the recipe's ``mean``/``std``. The ``pretrained_cfg_overlay`` carries these
settings, so ``timm.data.create_transform(**timm.data.resolve_data_config(model=model))``
builds the same preprocessing for PIL images (its resize is PIL's bicubic, not torch's:
equal up to interpolation rounding). A file name not ending in ``.safetensors`` is written
with ``torch.save`` instead (plain tensors: ``torch.load(path, weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from omnissl.errors import OmnisslError
from omnissl.export import write_weights_export, wrong_modality
from omnissl.layers.position import GridSinCos

SIZES = ("tiny", "small", "base", "large")
# omnissl readout -> timm global_pool (timm's "avgmax" averages the two: not omnissl's mean_max)
POOLS = {"mean": "avg", "max": "max"}
TOLERANCE = 1e-4  # largest |omnissl - timm| pooled feature an export accepts


def timm_model_name(size: str, patch_size: int, image_size: int) -> str:
    """``vit_<size>_patch<p>_<img>`` when timm registers it, else the size's ``vit_<size>_patch16_224``
    (every architecture setting is passed as a keyword anyway, so the name only picks timm's defaults)."""
    import timm

    size = size if size in SIZES else "tiny"
    exact = f"vit_{size}_patch{patch_size}_{image_size}"
    return exact if timm.is_model(exact) else f"vit_{size}_patch16_224"


def create_model_kwargs(encoder: nn.Module, modality: Any, readout: str) -> dict[str, Any]:
    """Keyword arguments of ``timm.create_model`` for a ViT equal to ``encoder`` on the
    image ``modality``'s inputs (an :class:`~omnissl_image.modality.ImageModality`)."""
    if readout not in POOLS:
        raise OmnisslError(f"the image modality's readout {readout!r} has no timm pooling ({', '.join(POOLS)} do)")
    mlp_ratio = encoder.blocks.blocks[0].mlp.fc1.out_features / encoder.dim if encoder.depth else 4.0
    channels = int(modality.channels)
    return {
        "num_classes": 0, "img_size": int(modality.image_size), "patch_size": int(modality.patchifier.patch_size[0]),
        "in_chans": channels, "embed_dim": int(encoder.dim), "depth": int(encoder.depth),
        "num_heads": int(encoder.heads), "mlp_ratio": float(mlp_ratio), "qkv_bias": True, "class_token": False,
        "global_pool": POOLS[readout], "fc_norm": False,
        "pretrained_cfg_overlay": {
            "input_size": [channels, int(modality.image_size), int(modality.image_size)],
            "mean": [float(v) for v in modality.mean], "std": [float(v) for v in modality.std],
            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "squash",
        },
    }


@torch.no_grad()
def to_timm(encoder: nn.Module, image_size: int, patch_size: int, channels: int) -> dict[str, Tensor]:
    """State dict of timm's ``VisionTransformer`` (``class_token=False``, ``num_classes=0``) holding
    ``encoder``'s weights, for ``image_size``-pixel square inputs of ``channels`` channels."""
    if not isinstance(encoder.value_embed, nn.Linear):
        raise OmnisslError("only encoders with a linear patch embedding become a timm ViT")
    if encoder.kind_embed is not None or encoder.bias_proj is not None:
        raise OmnisslError("this encoder adds kind embeddings or attention biases, which timm's ViT has no place for")
    groups = list(encoder.pos_embed.encoders)
    if len(groups) != 1 or not isinstance(groups[0], GridSinCos) or groups[0].num_axes != 2:
        raise OmnisslError("only encoders with 2-D grid sin-cos positions become a timm ViT")
    grid = image_size // patch_size
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")  # row-major, as timm flattens its patch grid
    coords = torch.stack([rows, cols], dim=-1).reshape(1, grid * grid, 2)
    weight = encoder.value_embed.weight  # (dim, C * p * p), each patch flattened (C, p, p) in C order
    state = {
        "pos_embed": encoder.pos_embed(coords).float(),  # (1, N, dim)
        "patch_embed.proj.weight": weight.reshape(encoder.dim, channels, patch_size, patch_size),
        "patch_embed.proj.bias": encoder.value_embed.bias,
    }
    for i, block in enumerate(encoder.blocks.blocks):  # timm's own Block: the names carry over
        for name, tensor in block.state_dict().items():
            state[f"blocks.{i}.{name}"] = tensor
    state["norm.weight"] = encoder.blocks.norm.weight
    state["norm.bias"] = encoder.blocks.norm.bias
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


@torch.no_grad()
def check_features(model: nn.Module, encoder: nn.Module, modality: Any, readout: str, seed: int = 0) -> float:
    """Largest |omnissl - timm| pooled feature on two random images in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    size = int(modality.image_size)
    images = torch.rand(2, int(modality.channels), size, size, generator=generator)
    inputs = torch.stack([modality.prepare({"image": image.numpy()}, None) for image in images])
    batch = [modality.patchifier(image) for image in inputs]
    values = torch.stack([t.values for t in batch])
    coords = torch.stack([t.coords for t in batch])
    ours = encoder.pool(encoder(values, coords).float(), torch.zeros(values.shape[:2], dtype=torch.bool), readout)
    theirs = model(inputs).float()
    return float((ours - theirs).abs().max())


def export_timm(encoder: nn.Module, recipe: dict[str, Any], out: Path, run_dir: Path | None = None) -> Path:
    """Write ``out`` (timm ViT weights) and ``out.json`` (the ``timm.create_model`` call and the
    preprocessing); ``omnissl export RUN_DIR --to timm --out FILE`` for image runs.

    The export is checked before it is written: the weights load into the timm model with
    ``strict=True`` and its pooled features equal omnissl's to 1e-4 on random images.
    """
    import timm

    from omnissl_image.modality import ImageModality

    section = dict(recipe.get("modality", {}))
    if section.pop("name", None) != "image":
        raise wrong_modality("timm", recipe.get("modality", {}).get("name"), ("image",))
    modality = ImageModality(**section)
    readout = getattr(modality, "readout", "mean")
    kwargs = create_model_kwargs(encoder, modality, readout)
    name = timm_model_name(str(recipe.get("encoder", {}).get("size", "tiny")), kwargs["patch_size"],
                           kwargs["img_size"])
    state = to_timm(encoder, kwargs["img_size"], kwargs["patch_size"], kwargs["in_chans"])
    model = timm.create_model(name, **kwargs).eval()
    model.load_state_dict(state, strict=True)
    difference = check_features(model, encoder.eval(), modality, readout)
    if not difference <= TOLERANCE:
        raise OmnisslError(f"the timm model's features differ from omnissl's by {difference:.3g} (> {TOLERANCE}); "
                           f"timm {timm.__version__} builds another ViT than this exporter expects")
    out = Path(out)
    load = ("model.load_state_dict(safetensors.torch.load_file(PATH), strict=True)" if out.suffix == ".safetensors"
            else "model.load_state_dict(torch.load(PATH, weights_only=True), strict=True)")
    info = {
        "target": "timm",
        "model_name": name,
        "create_model_kwargs": kwargs,
        "load": f"model = timm.create_model(MODEL_NAME, **CREATE_MODEL_KWARGS); {load}",
        "input": {"shape": ["batch", kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"]],
                  "range": "pixels scaled to [0, 1], then (x - mean) / std per channel",
                  "mean": kwargs["pretrained_cfg_overlay"]["mean"], "std": kwargs["pretrained_cfg_overlay"]["std"],
                  "resize": "bicubic, antialiased, to img_size x img_size (aspect not kept)",
                  "grey": "0.299 R + 0.587 G + 0.114 B" if kwargs["in_chans"] == 1 else None,
                  "omnissl": "ImageModality.prepare(sample, None) gives exactly this tensor"},
        "output": f"(batch, {kwargs['embed_dim']}) pooled features ({readout} over tokens after the final "
                  f"LayerNorm), omnissl's readout; model.forward_features gives the tokens",
        "max_abs_difference": difference,
        "timm_version": timm.__version__,
        "modality": recipe.get("modality"),
        "encoder": recipe.get("encoder"),
    }
    return write_weights_export(out, state, info, {"format": "pt", "timm_model": name})


export_timm.modalities = ("image",)  # omnissl export refuses other runs, naming what takes them
EXPORTERS = {"timm": export_timm}
