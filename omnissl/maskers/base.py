"""What a masker returns, and the helpers every masker shares."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.tokens import TokenBatch


@dataclass
class Mask:
    """Which tokens of a batch are hidden, with index sets for gathering them.

    Attributes:
        hidden: (B, N) bool, True where a real token is hidden; always False at padding.
        visible_idx: (B, V) long positions of visible tokens, real ones first.
        visible_pad: (B, V) bool, True where ``visible_idx`` is filler (sample has fewer).
        hidden_idx: (B, M) long positions of hidden tokens, real ones first.
        hidden_pad: (B, M) bool, True where ``hidden_idx`` is filler.
    """

    hidden: Tensor
    visible_idx: Tensor
    visible_pad: Tensor
    hidden_idx: Tensor
    hidden_pad: Tensor

    @classmethod
    def from_hidden(cls, hidden: Tensor, pad: Tensor) -> "Mask":
        """Build index sets from a (B, N) hidden mask; padding is neither visible nor hidden."""
        hidden = hidden & ~pad
        visible = ~hidden & ~pad
        visible_idx, visible_pad = _select(visible)
        hidden_idx, hidden_pad = _select(hidden)
        return cls(hidden, visible_idx, visible_pad, hidden_idx, hidden_pad)

    def to(self, device: torch.device | str) -> "Mask":
        return Mask(*(t.to(device) for t in (self.hidden, self.visible_idx, self.visible_pad,
                                             self.hidden_idx, self.hidden_pad)))


def _select(chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Positions where ``chosen`` (B, N) is True, left-aligned and padded to the largest count.

    Unequal counts are padded (filler index 0, marked in the returned pad), never truncated.
    """
    counts = chosen.sum(dim=1)
    width = int(counts.max()) if chosen.numel() else 0
    # A stable sort on ~chosen puts chosen positions first, in their original order.
    order = torch.sort((~chosen).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    filler = torch.arange(width, device=chosen.device)[None, :] >= counts[:, None]
    return order.masked_fill(filler, 0), filler


def hide_count(num_real: Tensor, ratio: float) -> Tensor:
    """How many of ``num_real`` tokens to hide: round(ratio * n), at least 1, keeping 1 visible."""
    k = torch.round(num_real.float() * ratio).long()
    return torch.minimum(k.clamp(min=1), (num_real - 1).clamp(min=0))


def check_ratio(ratio: float, where: str) -> float:
    if not 0.0 < ratio < 1.0:
        raise RecipeError(f"{where}: mask ratio must be between 0 and 1 (exclusive), got {ratio}")
    return float(ratio)


class Masker:
    """Base class: ``masker(batch, generator) -> Mask``, from coords, kinds and pad only."""

    def __call__(self, batch: TokenBatch, generator: torch.Generator | None = None) -> Mask:
        hidden = self.hidden(batch, generator)
        return Mask.from_hidden(hidden, batch.pad)

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        """(B, N) bool of hidden tokens (padding is cleared afterwards)."""
        raise NotImplementedError


def ensure_one_visible(hidden: Tensor, pad: Tensor, generator: torch.Generator | None) -> Tensor:
    """Unhide one random real token in any sample whose real tokens are all hidden."""
    real = ~pad
    all_hidden = (hidden | pad).all(dim=1) & real.any(dim=1)
    if all_hidden.any():
        scores = torch.rand(hidden.shape, generator=generator, device=hidden.device).masked_fill(pad, -1.0)
        pick = scores.argmax(dim=1)
        rows = all_hidden.nonzero().squeeze(1)
        hidden = hidden.clone()
        hidden[rows, pick[rows]] = False
    return hidden
