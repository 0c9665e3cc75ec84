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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, embeddings of positions/kinds and mask tokens (as MAE)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith("token") or ".tables." in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: OptimConfig, lr: float, device: torch.device) -> torch.optim.AdamW:
    # The fused kernel is one pass over all parameters, on CPU as on CUDA.
    return torch.optim.AdamW(param_groups(model, config.weight_decay), lr=lr, betas=tuple(config.betas),
                             eps=config.eps, fused=True)
