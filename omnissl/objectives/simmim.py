"""SimMIM (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022).

The encoder sees every token, hidden ones as a learned mask token (dense
mode); a linear head predicts each hidden token's targets from the encoder's
output. No decoder.
"""

from __future__ import annotations

from torch import nn

from omnissl.maskers.base import Mask
from omnissl.modality import Modality
from omnissl.objectives.base import MaskedPrediction, ObjectiveOutput
from omnissl.tokens import TokenBatch, gather_rows


class SimMIM(MaskedPrediction):
    """SimMIM over any tokens.

    Args:
        encoder: a :class:`~omnissl.encoders.TokenEncoder` (its ``mask_token`` is used).
        modality: gives the target streams and per-token losses.
        norm_target: per-token normalised target (off in SimMIM's paper).
    """

    def __init__(self, encoder: nn.Module, modality: Modality, norm_target: bool = False):
        super().__init__(encoder, modality, norm_target)
        self.heads = self.make_heads(encoder.dim)

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        features = self.encoder(batch.values, batch.coords, batch.kinds, batch.pad, batch.attn_bias,
                                hidden=mask.hidden)  # [B, N, D]
        return self.hidden_loss(batch, mask, gather_rows(features, mask.hidden_idx), self.heads)
