"""AdamW with linear warm-up and cosine decay (the MAE / timm schedule)."""

from __future__ import annotations

import math

import torch
from torch import nn

from omnissl.recipe import OptimConfig


def peak_lr(config: OptimConfig, batch_size: int) -> float:
    """The absolute peak lr; ``base_lr`` scales linearly with the batch (per 256 samples)."""
    return config.lr if config.lr is not None else config.base_lr * batch_size / 256


def lr_at(step: int, total: int, peak: float, config: OptimConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based) out of ``total``."""
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.min_lr + (peak - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def layer_id(name: str, depth: int) -> int:
    """BEiT's layer index of a parameter of an objective: 0 for the encoder's embeddings (values,
    positions, kinds, mask token, bias projection), i + 1 for the encoder's block i, depth + 1
    for everything after the blocks (the final norm, heads, decoders)."""
    if name.startswith("encoder.blocks.blocks."):
        return int(name.split(".")[3]) + 1
    if name.startswith("encoder.") and not name.startswith("encoder.blocks."):
        return 0
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """No weight decay on biases, norms, embeddings of positions/kinds and mask tokens (as MAE),
    nor on parameters the model exempts (``model.weight_decay_exempt``: name prefixes, as L2-SP
    does for the encoder it pulls toward its pre-trained weights). With ``layer_decay`` < 1, every
    group also carries ``lr_scale`` = layer_decay ** (depth + 1 - layer) (BEiT, MAE fine-tuning),
    which the loop multiplies into the scheduled lr."""
    exempt = tuple(getattr(model, "weight_decay_exempt", ()))
    depth = getattr(getattr(model, "encoder", None), "depth", 0)
    groups: dict[tuple[bool, int], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith("token") or ".tables." in name or name.startswith(exempt)
        layer = layer_id(name, depth) if layer_decay < 1.0 else 0
        groups.setdefault((not no_decay, layer), []).append(p)
    if layer_decay >= 1.0:  # the two groups of before, in their order (optimiser states stay loadable)
        return [{"params": groups.get((True, 0), []), "weight_decay": weight_decay},
                {"params": groups.get((False, 0), []), "weight_decay": 0.0}]
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": layer_decay ** (depth + 1 - layer)}
            for (decay, layer), params in sorted(groups.items(), key=lambda item: (item[0][1], not item[0][0]))]


def make_optimizer(model: nn.Module, config: OptimConfig, lr: float, device: torch.device) -> torch.optim.AdamW:
    # The fused kernel is one pass over all parameters, on CPU as on CUDA.
    groups = param_groups(model, config.weight_decay, config.layer_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(config.betas), eps=config.eps, fused=True)
