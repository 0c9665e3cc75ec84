"""Span masking along one coordinate axis: time spans across all channels (wav2vec 2.0,
Baevski et al. 2020; EEG time masking), frequency bands, or volume tubes."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.maskers.base import Masker, check_ratio, ensure_one_visible
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class SpanMasker(Masker):
    """Hide runs of ``span`` consecutive positions along coordinate column ``axis``.

    Every token whose ``axis`` coordinate falls in a hidden run is hidden, whatever
    its other coordinates (so a time span hides that time on every channel). Runs are
    added until at least ``ratio`` of the sample's real tokens are hidden.

    Args:
        ratio: target fraction of real tokens to hide.
        span: length of each run, counted in distinct positions along the axis.
        axis: coordinate column to mask along (negative counts from the last, as in Python).
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.5, span: Annotated[int, Range(ge=1)] = 2,
                 axis: int = -1):  # a column index (-1: the last): no Range
        self.ratio = check_ratio(ratio, "masker.ratio")
        if span < 1:
            raise RecipeError(f"masker.span must be >= 1, got {span}")
        self.span = int(span)
        self.axis = int(axis)

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        pad = batch.pad
        if not -batch.coords.shape[-1] <= self.axis < batch.coords.shape[-1]:
            raise RecipeError(f"masker.axis={self.axis} but tokens have {batch.coords.shape[-1]} coordinate columns")
        position = batch.coords[..., self.axis]
        hidden = torch.zeros_like(pad)
        for b in range(pad.shape[0]):
            real = ~pad[b]
            n = int(real.sum())
            if n < 2:
                continue
            values, inverse = torch.unique(position[b][real], return_inverse=True)  # sorted positions
            count = torch.bincount(inverse, minlength=values.numel())  # tokens per position
            want = max(1, round(self.ratio * n))
            chosen = torch.zeros(values.numel(), dtype=torch.bool, device=pad.device)
            start_order = torch.randperm(values.numel(), generator=generator, device=pad.device)
            for start in start_order.tolist():
                if int(count[chosen].sum()) >= want:
                    break
                chosen[start: start + self.span] = True
            hidden[b, real] = chosen[inverse]
        return ensure_one_visible(hidden, pad, generator)
