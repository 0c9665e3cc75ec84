"""Transformer blocks over padded token sets, built from timm's ``Block``.

Padding and pairwise priors reach ``scaled_dot_product_attention`` as one
additive float mask; with neither, no mask is passed so SDPA takes its fastest
kernel.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn


def attention_mask(pad: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Additive attention mask for SDPA.

    Args:
        pad: (B, N) bool, True at padding keys; None or all-False means no padding.
        bias: (B, H or 1, N, N) float prior, or None.
    Returns:
        (B, H or 1, N, N) float mask with -inf at padding keys, or None when there is nothing to mask.
    """
    has_pad = pad is not None and bool(pad.any())
    if bias is None and not has_pad:
        return None
    if bias is None:
        mask = torch.zeros(pad.shape[0], 1, 1, pad.shape[1], dtype=dtype, device=pad.device)
    else:
        mask = bias.to(dtype)
    if has_pad:
        mask = mask.masked_fill(pad[:, None, None, :], float("-inf"))
    return mask


class TransformerStack(nn.Module):
    """``depth`` pre-norm ViT blocks (timm) and a final LayerNorm.

    Args:
        dim: token width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: hidden width of each MLP relative to ``dim``.
        drop_path: stochastic depth rate of the last block (linearly increasing).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=rate) for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.num_heads = num_heads

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N, dim) -> (B, N, dim); ``mask`` from :func:`attention_mask`."""
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.norm(x)


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
