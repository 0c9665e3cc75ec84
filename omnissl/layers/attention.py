"""Transformer blocks over padded token sets, built from timm's ``Block``.

Padding and pairwise priors reach ``scaled_dot_product_attention`` as one
additive float mask; with neither, no mask is passed so SDPA takes its fastest
kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from omnissl.tokens import gather_rows


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

    def forward(self, x: Tensor, mask: Tensor | None = None,
                return_blocks: int = 0) -> Tensor | tuple[Tensor, list[Tensor]]:
        """(B, N, dim) -> (B, N, dim); ``mask`` from :func:`attention_mask`.

        With ``return_blocks`` K > 0, also the outputs of the last K blocks (the residual stream
        after each, before the final norm), first to last: ``(out, [block outputs])`` (the
        targets of data2vec, Baevski et al. 2022, 2023).
        """
        if return_blocks < 0 or return_blocks > len(self.blocks):
            raise ValueError(f"return_blocks must be between 0 and {len(self.blocks)} (the depth), got {return_blocks}")
        outputs = []
        first = len(self.blocks) - return_blocks
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask=mask)
            if return_blocks and i >= first:
                outputs.append(x)
        return (self.norm(x), outputs) if return_blocks else self.norm(x)

    def forward_with_attention(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(self(x, mask), attention)``: the output, and the last block's attention weights
        (B, H, N, N), softmax over keys (rows: queries), as AttMask reads a teacher's (Kakogeorgiou
        et al., ECCV 2022). The output is the plain forward's; the weights are computed on the side."""
        if not len(self.blocks):
            raise ValueError("a transformer of depth 0 has no attention to return")
        for block in self.blocks[:-1]:
            x = block(x, attn_mask=mask)
        attention = block_attention(self.blocks[-1], x, mask)
        return self.norm(self.blocks[-1](x, attn_mask=mask)), attention

    def forward_at(self, x: Tensor, idx: Tensor, mask: Tensor | None = None) -> Tensor:
        """Outputs at positions ``idx`` (B, M) only: (B, N, dim) -> (B, M, dim).

        Equal to ``gather_rows(self(x, mask), idx)``, but the last block computes queries,
        attention output and MLP for the M requested tokens only (keys and values still come
        from all N). An MAE decoder needs its output at hidden tokens alone, so this skips
        the visible tokens' share of the last block: a quarter of a one-block decoder at
        mask ratio 0.75.
        """
        for block in self.blocks[:-1]:
            x = block(x, attn_mask=mask)
        if len(self.blocks):
            x = query_block(self.blocks[-1], x, idx, mask)
        else:
            x = gather_rows(x, idx)
        return self.norm(x)


def query_block(block: Block, x: Tensor, idx: Tensor, mask: Tensor | None) -> Tensor:
    """timm ``Block`` evaluated for the tokens at ``idx`` only, attending to all of ``x``.

    Args:
        block: a timm ViT block (pre-norm attention + MLP).
        x: (B, N, dim) input of the block.
        idx: (B, M) positions whose outputs are wanted.
        mask: (B, H or 1, N, N) additive attention mask, or None.
    Returns:
        (B, M, dim), equal to ``gather_rows(block(x, mask), idx)``.
    """
    attn = block.attn
    b, n, dim = x.shape
    m = idx.shape[1]
    normed = block.norm1(x)  # [B, N, dim]
    queries = gather_rows(normed, idx)  # [B, M, dim]
    w_q, w_kv = attn.qkv.weight[:dim], attn.qkv.weight[dim:]
    b_q, b_kv = (attn.qkv.bias[:dim], attn.qkv.bias[dim:]) if attn.qkv.bias is not None else (None, None)
    q = F.linear(queries, w_q, b_q).view(b, m, attn.num_heads, attn.head_dim).transpose(1, 2)  # [B, H, M, hd]
    kv = F.linear(normed, w_kv, b_kv).view(b, n, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)  # [B, H, N, hd] each
    q, k = attn.q_norm(q), attn.k_norm(k)
    rows = mask  # a key-padding mask (B, 1, 1, N) holds for every query
    if mask is not None and mask.shape[2] > 1:  # per-query rows: keep those of the queried tokens
        rows = torch.gather(mask, 2, idx[:, None, :, None].expand(-1, mask.shape[1], -1, n))  # [B, h, M, N]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=rows,
                                         dropout_p=attn.attn_drop.p if block.training else 0.0)
    out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(b, m, dim))))
    h = gather_rows(x, idx) + block.drop_path1(block.ls1(out))
    return h + block.drop_path2(block.ls2(block.mlp(block.norm2(h))))


def block_attention(block: Block, x: Tensor, mask: Tensor | None) -> Tensor:
    """The softmax attention weights (B, H, N, N) of a timm ``Block`` on input ``x`` (B, N, dim),
    with the additive ``mask`` of :func:`attention_mask` (padding keys get weight 0)."""
    attn = block.attn
    b, n, _ = x.shape
    qkv = attn.qkv(block.norm1(x)).view(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # [B, H, N, hd]
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # [B, H, N, N]
    if mask is not None:
        logits = logits + mask.to(logits.dtype)
    return logits.float().softmax(dim=-1)


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
