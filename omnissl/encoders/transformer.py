"""The core encoder: a ViT over tokens with coordinates (Dosovitskiy et al., 2021),
whatever the modality.

Embedding = value embedding + positional encoding by coordinate kind + kind
embeddings. Two execution modes share the weights: *drop* (the caller passes
only the visible tokens, as MAE) and *dense* (all tokens, hidden ones replaced
by a learned mask token before the position is added, as SimMIM).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from omnissl.errors import RecipeError
from omnissl.layers import KindEmbedding, PositionEncoding, TransformerStack, attention_mask, init_weights
from omnissl.recipe import PoolName, Range
from omnissl.tokens import TokenBatch, TokenSpec, gather_rows

# name: (width, depth, heads), as timm's vit_{tiny,small,base,large}_patch16_224.
POOLS = typing.get_args(PoolName)

SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


class TokenEncoder(nn.Module):
    """Transformer encoder over padded token sets.

    Args:
        spec: the modality's token spec (value size, coordinate groups, kind vocabularies, bias channels).
        modality: the modality, asked for a custom value embedding (may be None).
        size: ``tiny``, ``small``, ``base`` or ``large``; ``dim``/``depth``/``heads`` override it.
        mlp_ratio: MLP width relative to ``dim``.
        drop_path: stochastic depth rate.
    """

    def __init__(self, spec: TokenSpec, modality: Any = None, size: str = "tiny",
                 dim: Annotated[int | None, Range(ge=1)] = None, depth: Annotated[int | None, Range(ge=1)] = None,
                 heads: Annotated[int | None, Range(ge=1)] = None, mlp_ratio: Annotated[float, Range(gt=0)] = 4.0,
                 drop_path: Annotated[float, Range(ge=0, lt=1)] = 0.0):
        super().__init__()
        if size not in SIZES:
            raise RecipeError(f"encoder.size={size!r} is not one of {', '.join(SIZES)}")
        d, n, h = SIZES[size]
        self.dim, self.depth, self.heads = dim or d, depth or n, heads or h
        self.spec = spec
        custom = modality.value_embedding(self.dim) if modality is not None else None
        self.value_embed = custom if custom is not None else nn.Linear(spec.value_dim, self.dim)
        self.pos_embed = PositionEncoding(spec.coords, self.dim)
        self.kind_embed = KindEmbedding(spec.kind_vocab, self.dim, spec.content_kinds) if spec.kind_vocab else None
        self.bias_proj = nn.Linear(spec.bias_channels, self.heads) if spec.bias_channels > 1 else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.dim))
        self.blocks = TransformerStack(self.dim, self.depth, self.heads, mlp_ratio, drop_path)
        self.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        if isinstance(self.value_embed, nn.Linear):
            # MAE initialises the patch projection like a linear layer of its flattened kernel.
            nn.init.xavier_uniform_(self.value_embed.weight)

    def embed(self, values: Tensor, coords: Tensor, kinds: Tensor | None, hidden: Tensor | None = None) -> Tensor:
        """(B, N, D) values, (B, N, C) coords, (B, N, G) kinds -> (B, N, dim).

        Where ``hidden`` (B, N) is True, the value embedding is replaced by the mask token and
        content kinds are left out; positions and identity kinds are still added (SimMIM's dense mode).
        """
        x = self.value_embed(values)
        if hidden is not None:
            x = torch.where(hidden[..., None], self.mask_token.to(x.dtype), x)
        x = x + self.pos_embed(coords)
        if self.kind_embed is not None and kinds is not None:
            x = x + self.kind_embed(kinds, hidden)
        return x

    def bias_heads(self, attn_bias: Tensor | None) -> Tensor | None:
        """(B, N, N) or (B, N, N, R) prior -> (B, 1 or H, N, N)."""
        if attn_bias is None:
            return None
        return project_bias(attn_bias, self.bias_proj)

    def forward(self, values: Tensor, coords: Tensor, kinds: Tensor | None = None, pad: Tensor | None = None,
                attn_bias: Tensor | None = None, hidden: Tensor | None = None,
                return_blocks: int = 0) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Encode tokens: returns (B, N, dim) features (padding rows are meaningless).

        With ``return_blocks`` K > 0, returns ``(features, blocks)``, ``blocks`` the (B, N, dim)
        outputs of the last K transformer blocks before the final norm (data2vec's targets).
        """
        x = self.embed(values, coords, kinds, hidden)
        mask = attention_mask(pad, self.bias_heads(attn_bias), x.dtype)
        return self.blocks(x, mask, return_blocks=return_blocks)

    def attention_scores(self, values: Tensor, coords: Tensor, kinds: Tensor | None = None, pad: Tensor | None = None,
                         attn_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode tokens and say how much each is attended to: ``(features, scores)``.

        ``features`` are :meth:`forward`'s (B, N, dim); ``scores`` (B, N) are the last block's
        attention weights averaged over heads and over the real query tokens, the attention each
        token receives (AttMask's teacher map, Kakogeorgiou et al., ECCV 2022, computed for tokens
        without a [CLS]); 0 at padding, and each real row sums to 1.
        """
        x = self.embed(values, coords, kinds)
        mask = attention_mask(pad, self.bias_heads(attn_bias), x.dtype)
        features, attention = self.blocks.forward_with_attention(x, mask)  # [B, H, N, N]
        per_query = attention.mean(dim=1)  # [B, N, N]
        if pad is None:
            return features, per_query.mean(dim=1)
        real = (~pad).to(per_query.dtype)
        scores = (per_query * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp(min=1)
        return features, scores.masked_fill(pad, 0.0)

    def forward_batch(self, batch: TokenBatch) -> Tensor:
        """Encode a whole batch with nothing hidden: (B, N, dim)."""
        return self.forward(batch.values, batch.coords, batch.kinds, batch.pad, batch.attn_bias)

    @staticmethod
    def pool(features: Tensor, pad: Tensor, how: str = "mean") -> Tensor:
        """Pool over real tokens: (B, N, dim), (B, N) -> (B, dim), or (B, 2 * dim) for ``mean_max``.

        ``mean`` is MAE's readout; ``max`` and ``mean_max`` (mean and max concatenated) are
        Point-MAE's, better suited when a class shows in a few tokens among many similar ones.
        """
        if how not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {how!r}")
        keep = (~pad).unsqueeze(-1).to(features.dtype)
        mean = (features * keep).sum(1) / keep.sum(1).clamp(min=1)
        if how == "mean":
            return mean
        peak = features.masked_fill(pad.unsqueeze(-1), float("-inf")).amax(1)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))  # an all-padding row
        return peak if how == "max" else torch.cat([mean, peak], dim=-1)


def project_bias(attn_bias: Tensor, proj: nn.Linear | None) -> Tensor:
    """(B, N, N) or (B, N, N, R) prior -> (B, 1 or H, N, N) float bias.

    Relation channels may arrive in low precision (float16 keeps collation and
    host-to-device copies of large [N, N, R] tensors cheap); they are cast here.
    """
    if proj is None:
        bias = attn_bias if attn_bias.ndim == 3 else attn_bias.float().mean(-1)
        return bias.float()[:, None]
    return proj(attn_bias.to(proj.weight.dtype)).permute(0, 3, 1, 2)


def gather_tokens(batch: TokenBatch, idx: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Values, coords, kinds and attention bias of the tokens at ``idx`` (R, K).

    ``R`` is the batch's B, or a multiple of it: row ``r`` then points into sample ``r // (R / B)``,
    the order of :func:`~omnissl.objectives.base.repeat_batch` (views or copies of each sample in a
    row), and the result equals ``gather_tokens(repeat_batch(batch, R // B), idx)`` without
    repeating the batch.
    """
    coords, kinds, bias = gather_layout(batch, idx)
    return _gather_repeated(batch.values, idx, batch.batch_size), coords, kinds, bias


def gather_layout(batch: TokenBatch, idx: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Coords, kinds and attention bias of the tokens at ``idx`` (R, K), as :func:`gather_tokens`
    without the values (what a predictor reads for its queries)."""
    b = batch.batch_size
    kinds = _gather_repeated(batch.kinds, idx, b) if batch.kinds is not None else None
    bias = None
    if batch.attn_bias is not None:  # rows, then columns: (B, N, N[, R]) -> (R, K, K[, R])
        bias = gather_rows(_gather_repeated(batch.attn_bias, idx, b).transpose(1, 2), idx).transpose(1, 2)
    return _gather_repeated(batch.coords, idx, b), kinds, bias


def _gather_repeated(t: Tensor, idx: Tensor, b: int) -> Tensor:
    """(B, N, ...) at (R, K) positions, R a multiple of B -> (R, K, ...): one gather per tensor,
    each sample's R / B rows of positions side by side."""
    rows, k = idx.shape
    if rows == b:
        return gather_rows(t, idx)
    if rows % b:
        raise ValueError(f"{rows} rows of positions for a batch of {b} samples: need a multiple of {b}")
    return gather_rows(t, idx.reshape(b, rows // b * k)).reshape(rows, k, *t.shape[2:])
