"""Time and frequency span masking together (SpecAugment, Park et al. 2019; SSAST / AudioMAE's
"time+frequency" masking ablation), composed from two core span maskers."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from omnissl.maskers import Masker, SpanMasker
from omnissl.maskers.base import ensure_one_visible
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class TimeFrequencyMasker(Masker):
    """Hide whole time spans (all bins) and whole frequency bands (all times).

    Token coordinates must be (time index, frequency index), as the audio modality emits.
    The two sets are drawn independently and united, so the hidden fraction is about
    ``time_ratio + freq_ratio - time_ratio * freq_ratio``.

    Args:
        time_ratio: fraction of tokens hidden by time spans.
        time_span: patches per time span.
        freq_ratio: fraction of tokens hidden by frequency bands.
        freq_span: patches per frequency band.
    """

    def __init__(self, time_ratio: Annotated[float, Range(gt=0, lt=1)] = 0.6,
                 time_span: Annotated[int, Range(ge=1)] = 2, freq_ratio: Annotated[float, Range(gt=0, lt=1)] = 0.5,
                 freq_span: Annotated[int, Range(ge=1)] = 1):
        self.time = SpanMasker(time_ratio, time_span, axis=0)
        self.freq = SpanMasker(freq_ratio, freq_span, axis=1)

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        hidden = self.time.hidden(batch, generator) | self.freq.hidden(batch, generator)  # [B, N]
        return ensure_one_visible(hidden, batch.pad, generator)
