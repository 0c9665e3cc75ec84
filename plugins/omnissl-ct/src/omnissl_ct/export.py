"""Hand a pre-trained encoder back to MONAI: weights for ``monai.networks.nets.ViT``, the
encoder inside ``monai.networks.nets.UNETR`` (Hatamizadeh et al., "UNETR: Transformers for
3D Medical Image Segmentation", WACV 2022).

omnissl's encoder and MONAI's ViT are the same network (pre-norm blocks, fused qkv,
GELU MLP, final LayerNorm); only names differ, and omnissl's fixed 3-D sin-cos positions
are written into the ViT's position table for the chosen image size. The patch
projection becomes the ViT's Conv3d (or perceptron) patch embedding.

Usage, after ``omnissl train ct/mae-vit-base --out runs/ct``::

    omnissl export runs/ct --to monai-unetr --out unetr_vit.pt
    # in MONAI:
    net = UNETR(**json.load(open("unetr_vit.pt.json"))["unetr_kwargs"], in_channels=1, out_channels=14)
    net.vit.load_state_dict(torch.load("unetr_vit.pt", weights_only=True))
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from omnissl.errors import OmnisslError, RecipeError

TARGETS = ("monai-unetr", "monai-vit")
UNETR_PATCH = 16  # monai.networks.nets.UNETR fixes its ViT's patch size to 16 ...
UNETR_DEPTH = 12  # ... and its depth to 12 (its decoder taps blocks 3, 6 and 9)


def vit_kwargs(encoder: nn.Module, img_size: Sequence[int], patch_size: Sequence[int],
               proj_type: str = "conv") -> dict[str, Any]:
    """Keyword arguments of ``monai.networks.nets.ViT`` matching ``encoder`` (a TokenEncoder)."""
    mlp_dim = encoder.blocks.blocks[0].mlp.fc1.out_features if encoder.depth else 4 * encoder.dim
    return {"img_size": list(img_size), "patch_size": list(patch_size), "hidden_size": encoder.dim,
            "mlp_dim": mlp_dim, "num_layers": encoder.depth, "num_heads": encoder.heads, "proj_type": proj_type,
            "qkv_bias": True, "classification": False, "dropout_rate": 0.0}


def unetr_kwargs(encoder: nn.Module, img_size: Sequence[int], proj_type: str = "conv") -> dict[str, Any]:
    """Keyword arguments of ``monai.networks.nets.UNETR`` whose ``vit`` matches ``encoder``."""
    kw = vit_kwargs(encoder, img_size, (UNETR_PATCH,) * len(img_size), proj_type)
    return {"img_size": kw["img_size"], "hidden_size": kw["hidden_size"], "mlp_dim": kw["mlp_dim"],
            "num_heads": kw["num_heads"], "proj_type": proj_type, "qkv_bias": True, "dropout_rate": 0.0}


def grid_coords(grid: Sequence[int]) -> Tensor:
    """(prod(grid), len(grid)) grid indices in ViT token order (row-major, as a Conv3d flattens)."""
    axes = [torch.arange(g, dtype=torch.float32) for g in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


@torch.no_grad()
def to_monai_vit(encoder: nn.Module, img_size: Sequence[int], patch_size: Sequence[int], in_channels: int = 1,
                 proj_type: str = "conv") -> dict[str, Tensor]:
    """State dict of ``monai.networks.nets.ViT`` (= ``UNETR.vit``) holding ``encoder``'s weights.

    Args:
        encoder: an :class:`omnissl.encoders.TokenEncoder` pre-trained on (C, *patch_size) patches.
        img_size: spatial input size of the ViT; each axis a multiple of the patch size.
        patch_size: patch size the encoder was trained with.
        in_channels: C.
        proj_type: the ViT's patch embedding, ``"conv"`` (UNETR's default) or ``"perceptron"``.
    """
    if not isinstance(encoder.value_embed, nn.Linear):
        raise OmnisslError("only encoders with a linear patch embedding can become a MONAI ViT")
    grid = [s // p for s, p in zip(img_size, patch_size)]
    if any(s % p for s, p in zip(img_size, patch_size)):
        raise RecipeError(f"img_size {list(img_size)} is not a multiple of the patch size {list(patch_size)}")
    weight, bias = encoder.value_embed.weight, encoder.value_embed.bias  # [dim, C * prod(p)], C-major
    kernel = weight.reshape(encoder.dim, in_channels, *patch_size)
    if proj_type == "conv":
        embed = {"patch_embedding.patch_embeddings.weight": kernel, "patch_embedding.patch_embeddings.bias": bias}
    elif proj_type == "perceptron":  # MONAI flattens a patch as (p1, p2, p3, C): channels last
        last = kernel.permute(0, *range(2, 2 + len(patch_size)), 1).reshape(encoder.dim, -1)
        embed = {"patch_embedding.patch_embeddings.1.weight": last, "patch_embedding.patch_embeddings.1.bias": bias}
    else:
        raise RecipeError(f"proj_type must be 'conv' or 'perceptron', got {proj_type!r}")
    state = {k: v.clone() for k, v in embed.items()}
    state["patch_embedding.position_embeddings"] = encoder.pos_embed(grid_coords(grid)[None]).float()  # [1, n, dim]
    names = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.out_proj", "norm2": "norm2",
             "mlp.fc1": "mlp.linear1", "mlp.fc2": "mlp.linear2"}
    for i, block in enumerate(encoder.blocks.blocks):
        ours = dict(block.named_parameters())
        for src, dst in names.items():
            for field in ("weight", "bias"):
                state[f"blocks.{i}.{dst}.{field}"] = ours[f"{src}.{field}"].detach().clone()
        # MONAI's blocks always hold a LayerNorm for cross-attention, unused in a ViT: keep its defaults.
        state[f"blocks.{i}.norm_cross_attn.weight"] = torch.ones(encoder.dim)
        state[f"blocks.{i}.norm_cross_attn.bias"] = torch.zeros(encoder.dim)
    state["norm.weight"] = encoder.blocks.norm.weight.detach().clone()
    state["norm.bias"] = encoder.blocks.norm.bias.detach().clone()
    return state


def match_layernorm_eps(vit: nn.Module, eps: float = 1e-6) -> nn.Module:
    """Give MONAI's LayerNorms omnissl's epsilon (timm's 1e-6; MONAI uses 1e-5), for exact equivalence.
    Without it the outputs differ by about 1e-5 relative, which does not matter for fine-tuning."""
    for module in vit.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = eps
    return vit


def export_encoder(encoder: nn.Module, recipe: dict[str, Any], out: Path, target: str = "monai-unetr",
                   img_size: int | None = None, proj_type: str = "conv") -> Path:
    """Write ``out`` (the ViT state dict, loadable with ``weights_only=True``) and ``out.json``
    (the MONAI constructor arguments and the preprocessing the encoder expects).

    This is what ``omnissl export RUN_DIR --to monai-unetr|monai-vit --out FILE`` calls with the
    run's pre-trained encoder and resolved recipe.
    """
    if target not in TARGETS:
        raise RecipeError(f"--to must be one of {', '.join(TARGETS)}, got {target!r}")
    modality = recipe.get("modality", {})
    if modality.get("name") != "ct":
        raise OmnisslError(f"this run was trained on modality {modality.get('name')!r}; {target} takes ct runs")
    patch = int(modality.get("patch_size", 16))
    size = int(img_size or modality.get("crop_size", 96))
    if target == "monai-unetr" and (patch != UNETR_PATCH or encoder.depth != UNETR_DEPTH):
        raise OmnisslError(f"UNETR's ViT has {UNETR_PATCH}³ patches and {UNETR_DEPTH} blocks (fixed in "
                           f"monai.networks.nets.UNETR); this run's encoder has {patch}³ patches and "
                           f"{encoder.depth} blocks. Export with --to monai-vit and build "
                           f"monai.networks.nets.ViT instead.")
    state = to_monai_vit(encoder, (size,) * 3, (patch,) * 3, 1, proj_type)
    info = {"target": target, "vit_kwargs": vit_kwargs(encoder, (size,) * 3, (patch,) * 3, proj_type),
            "layernorm_eps": 1e-6, "preprocessing": recipe.get("data", {})}
    if target == "monai-unetr":
        info["unetr_kwargs"] = unetr_kwargs(encoder, (size,) * 3, proj_type)
    from omnissl.export import write_weights_export

    return write_weights_export(out, state, info)


EXPORTERS = {target: partial(export_encoder, target=target) for target in TARGETS}
for _exporter in EXPORTERS.values():
    _exporter.modalities = ("ct",)  # export_run refuses other runs up front, naming what they can use
