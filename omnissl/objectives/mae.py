"""Masked autoencoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

The encoder sees only the visible tokens; a light decoder sees encoded visible
tokens plus mask tokens at every hidden position and predicts each hidden
token's targets. The loss is computed on hidden tokens only.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from omnissl.encoders.transformer import gather_tokens, project_bias
from omnissl.layers import KindEmbedding, PositionEncoding, TransformerStack, attention_mask, init_weights
from omnissl.maskers.base import Mask
from omnissl.modality import Modality
from omnissl.objectives.base import MaskedPrediction, ObjectiveOutput
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


class MAE(MaskedPrediction):
    """MAE over any tokens.

    Args:
        encoder: a :class:`~omnissl.encoders.TokenEncoder`.
        modality: gives the target streams and per-token losses.
        decoder_dim: decoder width (MAE: 512).
        decoder_depth: decoder blocks (MAE: 8).
        decoder_heads: decoder attention heads (MAE: 16).
        norm_target: per-token normalised target (MAE's ``norm_pix_loss``).
    """

    def __init__(self, encoder: nn.Module, modality: Modality, decoder_dim: Annotated[int, Range(ge=1)] = 512,
                 decoder_depth: Annotated[int, Range(ge=1)] = 8, decoder_heads: Annotated[int, Range(ge=1)] = 16,
                 mlp_ratio: Annotated[float, Range(gt=0)] = 4.0, norm_target: bool = True):
        super().__init__(encoder, modality, norm_target)
        spec = encoder.spec
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = PositionEncoding(spec.coords, decoder_dim)
        self.decoder_kinds = (KindEmbedding(spec.kind_vocab, decoder_dim, spec.content_kinds)
                              if spec.kind_vocab else None)
        self.decoder_bias = nn.Linear(spec.bias_channels, decoder_heads) if spec.bias_channels > 1 else None
        self.decoder = TransformerStack(decoder_dim, decoder_depth, decoder_heads, mlp_ratio)
        self.heads = self.make_heads(decoder_dim)
        for module in (self.decoder_embed, self.decoder_pos, self.decoder, self.heads):
            module.apply(init_weights)
        if self.decoder_kinds is not None:
            for table in self.decoder_kinds.tables:
                nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward_encoder(self, batch: TokenBatch, mask: Mask) -> Tensor:
        """Encode visible tokens only: (B, V, encoder_dim)."""
        values, coords, kinds, bias = gather_tokens(batch, mask.visible_idx)
        return self.encoder(values, coords, kinds, mask.visible_pad, bias)

    def forward_decoder(self, batch: TokenBatch, mask: Mask, latent: Tensor, all_tokens: bool = False) -> Tensor:
        """Decode all tokens; return features at hidden positions (B, M, decoder_dim), or at
        every position (B, N, decoder_dim) when ``all_tokens`` (for pairwise heads)."""
        b, n = batch.pad.shape
        x = self.decoder_embed(latent)  # [B, V, Dd]
        # Start from mask tokens everywhere (one spare slot absorbs filler entries), then
        # put the encoded visible tokens back at their positions.
        full = self.mask_token.to(x.dtype).expand(b, n + 1, -1).clone()  # [B, N+1, Dd]
        idx = mask.visible_idx.masked_fill(mask.visible_pad, n)
        full.scatter_(1, idx[..., None].expand(-1, -1, x.shape[-1]), x)
        x = full[:, :n] + self.decoder_pos(batch.coords).to(x.dtype)  # [B, N, Dd]
        if self.decoder_kinds is not None:
            x = x + self.decoder_kinds(batch.kinds, mask.hidden)  # content kinds stay hidden
        bias = project_bias(batch.attn_bias, self.decoder_bias) if batch.attn_bias is not None else None
        attn_mask = attention_mask(batch.pad, bias, x.dtype)
        if all_tokens:
            return self.decoder(x, attn_mask)  # [B, N, Dd]
        return self.decoder.forward_at(x, mask.hidden_idx, attn_mask)  # [B, M, Dd]: only hidden outputs

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        latent = self.forward_encoder(batch, mask)
        features = self.forward_decoder(batch, mask, latent)
        return self.hidden_loss(batch, mask, features, self.heads)
