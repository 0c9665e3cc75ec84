"""No masking: every real token is visible (supervised fine-tuning, feature extraction)."""

from __future__ import annotations

import torch
from torch import Tensor

from omnissl.maskers.base import Masker
from omnissl.tokens import TokenBatch


class NoMasker(Masker):
    """Hide nothing. ``omnissl finetune`` trains with it: the encoder sees whole samples."""

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        return torch.zeros_like(batch.pad)
