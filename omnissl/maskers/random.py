"""Uniform random masking (He et al., "Masked Autoencoders Are Scalable Vision Learners", 2022)."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from omnissl.maskers.base import Masker, check_ratio, hide_count
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class RandomMasker(Masker):
    """Hide ``round(ratio * n)`` tokens of each sample uniformly at random.

    Args:
        ratio: fraction of each sample's real (non-padding) tokens to hide.
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.75):
        self.ratio = check_ratio(ratio, "masker.ratio")

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        pad = batch.pad
        noise = torch.rand(pad.shape, generator=generator, device=pad.device)  # [B, N]
        noise = noise.masked_fill(pad, 2.0)  # padding ranks last
        ranks = noise.argsort(dim=1).argsort(dim=1)
        k = hide_count((~pad).sum(dim=1), self.ratio)
        return ranks < k[:, None]
