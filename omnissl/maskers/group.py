"""Group masking: hide every token that shares a key (whole channels, whole atoms' features)."""

from __future__ import annotations

from typing import Annotated, Sequence

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.maskers.base import Masker, check_ratio, ensure_one_visible
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class GroupMasker(Masker):
    """Hide whole groups of tokens until at least ``ratio`` of each sample is hidden.

    A group is the set of tokens with equal key, the key being a ``kinds`` column
    and/or some coordinate columns (an EEG channel is the tokens with one sensor
    position: ``coord_axes: [0, 1, 2]``).

    Args:
        ratio: target fraction of real tokens to hide.
        kinds_column: ``kinds`` column that is part of the key, or None.
        coord_axes: coordinate columns that are part of the key (negative counts from the last), or None.
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.5,
                 kinds_column: Annotated[int | None, Range(ge=0)] = None,
                 coord_axes: Sequence[int] | None = None):  # column indices (negative: from the end): no Range
        self.ratio = check_ratio(ratio, "masker.ratio")
        if kinds_column is None and not coord_axes:
            raise RecipeError("masker 'group' needs kinds_column or coord_axes to say what a group is")
        self.kinds_column = kinds_column
        self.coord_axes = list(coord_axes) if coord_axes else []

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        parts = []
        if self.kinds_column is not None:
            if batch.kinds is None:
                raise RecipeError("masker 'group' has kinds_column set but these tokens carry no kinds")
            parts.append(batch.kinds[..., self.kinds_column: self.kinds_column + 1].float())
        if self.coord_axes:
            parts.append(batch.coords[..., self.coord_axes].float())
        key = torch.cat(parts, dim=-1)  # [B, N, K]
        pad = batch.pad
        hidden = torch.zeros_like(pad)
        for b in range(pad.shape[0]):
            real = ~pad[b]
            n = int(real.sum())
            if n < 2:
                continue
            _, group = torch.unique(key[b][real], dim=0, return_inverse=True)  # [n]
            num_groups = int(group.max()) + 1
            sizes = torch.bincount(group, minlength=num_groups)
            want = max(1, round(self.ratio * n))
            order = torch.randperm(num_groups, generator=generator, device=pad.device)
            covered = torch.cumsum(sizes[order], dim=0)
            take = int((covered < want).sum()) + 1  # the smallest prefix reaching `want`
            chosen = torch.zeros(num_groups, dtype=torch.bool, device=pad.device)
            chosen[order[:take]] = True
            hidden[b, real] = chosen[group]
        return ensure_one_visible(hidden, pad, generator)
