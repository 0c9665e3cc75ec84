"""Block-wise masking: hide contiguous boxes in coordinate space (BEiT, Bao et al. 2022; nnssl 3-D blocks)."""

from __future__ import annotations

from typing import Annotated, Sequence

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.maskers.base import Masker, check_ratio, ensure_one_visible, hide_count
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class BlockMasker(Masker):
    """Hide axis-aligned boxes of tokens until at least ``ratio`` of each sample is hidden.

    Boxes are centred at random real tokens, shifted to lie inside the sample's extent,
    and span ``size`` coordinate units along each axis (drawn from ``[min_size, max_size]``
    per box and axis).
    Whole boxes are hidden, so the hidden fraction may exceed ``ratio`` slightly.

    Args:
        ratio: target fraction of real tokens to hide.
        min_size: smallest box extent along each axis, in coordinate units.
        max_size: largest box extent; defaults to ``min_size`` (fixed-size blocks).
        axes: coordinate columns that span the space (default: all; negative counts from the last).
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.6,
                 min_size: Annotated[float, Range(gt=0)] = 2.0,
                 max_size: Annotated[float | None, Range(gt=0)] = None,
                 axes: Sequence[int] | None = None):  # column indices (negative: from the end): no Range
        self.ratio = check_ratio(ratio, "masker.ratio")
        self.min_size = float(min_size)
        self.max_size = float(max_size if max_size is not None else min_size)
        if self.min_size <= 0 or self.max_size < self.min_size:
            raise RecipeError(f"masker: need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.axes = list(axes) if axes is not None else None

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        coords = batch.coords if self.axes is None else batch.coords[..., self.axes]
        pad = batch.pad
        hidden = torch.zeros_like(pad)
        targets = hide_count((~pad).sum(dim=1), self.ratio)
        device = pad.device
        for b in range(pad.shape[0]):
            real = (~pad[b]).nonzero().squeeze(1)
            if real.numel() < 2:
                continue
            pts = coords[b, real]  # [n, A]
            low, high = pts.min(dim=0, keepdim=True).values, pts.max(dim=0, keepdim=True).values
            got = torch.zeros(real.numel(), dtype=torch.bool, device=device)
            for _ in range(64 * real.numel()):  # bounded: each box hides >= its anchor
                if int(got.sum()) >= int(targets[b]):
                    break
                anchor = pts[torch.randint(real.numel(), (1,), generator=generator, device=device)]  # [1, A]
                size = self.min_size + (self.max_size - self.min_size) * torch.rand(
                    (1, pts.shape[1]), generator=generator, device=device)
                # Centre the box on the anchor, then shift it inside the sample's extent so no
                # box is clipped at a border; integer sizes cover exactly `size` grid cells.
                lo = torch.minimum(torch.maximum(anchor - torch.floor(size / 2), low), high - size + 1)
                lo = torch.maximum(lo, low)
                got |= ((pts >= lo) & (pts < lo + size)).all(dim=1)
            hidden[b, real] = got
        return ensure_one_visible(hidden, pad, generator)
