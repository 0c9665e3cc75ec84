"""Attention-guided masking (Kakogeorgiou et al., "What to Hide from Your Students:
Attention-Guided Masked Image Modeling", ECCV 2022): hide the tokens a teacher attends to most.

AttMask ranks tokens by the attention a teacher's last block pays them and hides the most
attended ones ("AttMask-High"), which makes the masked-token task harder than random masking,
mixed with random hiding so the student still sees the whole range of tokens. Here ``ratio`` of
each sample's real tokens are hidden, ``random_fraction`` of them uniformly at random among the
tokens left, the others the highest-scoring ones.

The scores come from the model, so this masker is called by an objective's ``make_mask``
(``masker.hide_by_scores(batch, scores, generator)``, with the teacher's
:meth:`~omnissl.encoders.TokenEncoder.attention_scores`; ``ibot`` does this). Called as a plain
masker (``masker(batch, generator)``, by an objective that knows nothing of attention), it has
no scores and draws them uniformly at random: it is then random masking at ``ratio``.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.maskers.base import Mask, Masker, check_ratio, hide_count
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class AttentionMasker(Masker):
    """Hide the most attended tokens, and a random share of the hidden ones (AttMask).

    Args:
        ratio: fraction of each sample's real (non-padding) tokens to hide.
        random_fraction: fraction of the hidden tokens chosen uniformly at random among the
            tokens the scores did not pick (0: AttMask-High alone; 1: random masking).
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.5,
                 random_fraction: Annotated[float, Range(ge=0, le=1)] = 0.5):
        self.ratio = check_ratio(ratio, "masker.ratio")
        if not 0.0 <= random_fraction <= 1.0:
            raise RecipeError(f"masker.random_fraction must be between 0 and 1, got {random_fraction}")
        self.random_fraction = float(random_fraction)

    def hide_by_scores(self, batch: TokenBatch, scores: Tensor, generator: torch.Generator | None = None) -> Mask:
        """The mask hiding the top-scoring tokens of each sample, plus random ones.

        Args:
            batch: the tokens (only ``pad`` is read).
            scores: (B, N) how much each token is attended to (higher: hidden first); ignored at padding.
            generator: draws the random share.
        """
        return Mask.from_hidden(self.hidden_by_scores(batch.pad, scores, generator), batch.pad)

    def hidden_by_scores(self, pad: Tensor, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        """(B, N) bool: ``round(ratio * n)`` real tokens per sample (at least 1, leaving 1 visible)."""
        if scores.shape != pad.shape:
            raise ValueError(f"attention scores must be (B, N) = {tuple(pad.shape)}, got {tuple(scores.shape)}")
        k = hide_count((~pad).sum(dim=1), self.ratio)  # [B]
        k_random = torch.round(k.float() * self.random_fraction).long()
        k_top = k - k_random
        top_rank = scores.float().masked_fill(pad, float("-inf")).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(top_rank).scatter_(1, top_rank, torch.arange(pad.shape[1], device=pad.device)
                                                   .expand_as(top_rank))
        top = (rank < k_top[:, None]) & ~pad
        noise = torch.rand(pad.shape, generator=generator, device=pad.device).masked_fill(pad | top, 2.0)
        rest = noise.argsort(dim=1).argsort(dim=1) < k_random[:, None]
        return top | (rest & ~pad)

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        """Without a teacher's scores: random scores, i.e. random masking at ``ratio``."""
        scores = torch.rand(batch.pad.shape, generator=generator, device=batch.pad.device)
        return self.hidden_by_scores(batch.pad, scores, generator)
