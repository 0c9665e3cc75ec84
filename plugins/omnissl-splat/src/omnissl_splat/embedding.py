"""The group embedding: a mini-PointNet over each group's Gaussians (Point-MAE, Gaussian-MAE).

Point-MAE (Pang et al., ECCV 2022) embeds a group of k points with a shared MLP, a max pool,
the pooled feature concatenated back onto every point, a second shared MLP and a final max
pool (the PointNet of Qi et al., CVPR 2017, two levels deep). Gaussian-MAE (Ma et al.,
"ShapeSplat", 2024) replaces the max pools with *splat pooling*, which we implement as a
softmax-weighted pool over the group's members with a learnable temperature per channel:
a low temperature approaches max pooling, a high one average pooling, so the layer learns
how much each channel should summarise the group's extreme vs typical Gaussian.

LayerNorm rather than Point-MAE's BatchNorm: batches hold padding groups (zeros), and batch
statistics would let them leak into every real token's embedding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


class SplatPool(nn.Module):
    """Softmax pool over group members with a learnable per-channel temperature.

    ``pool(x)[c] = sum_j softmax_j(x[j, c] / t_c) * x[j, c]``, with ``t_c = exp(log_t_c)``.
    """

    def __init__(self, channels: int, init_temperature: float = 0.1):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.full((channels,), float(init_temperature)).log())

    def forward(self, x: Tensor) -> Tensor:
        """(..., k, C) -> (..., C)."""
        weights = torch.softmax(x / self.log_temperature.exp().to(x.dtype), dim=-2)
        return (weights * x).sum(dim=-2)


class MaxPool(nn.Module):
    """Max over group members: (..., k, C) -> (..., C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.max(dim=-2).values


class MiniPointNet(nn.Module):
    """Embeds flattened groups of Gaussians: (B, N, k * attributes) -> (B, N, dim).

    Args:
        attributes: values per Gaussian (14: centre-relative xyz, opacity, scale, rotation, colour).
        dim: output width (the encoder's).
        hidden: width of the first shared MLP (Point-MAE: 128, then 256).
        pooling: ``max`` (Point-MAE) or ``splat`` (Gaussian-MAE's splat pooling).
    """

    def __init__(self, attributes: int, dim: int, hidden: int = 128, pooling: Literal["max", "splat"] = "max"):
        super().__init__()
        self.attributes = attributes
        self.first = nn.Sequential(nn.Linear(attributes, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                   nn.Linear(hidden, 2 * hidden))
        self.second = nn.Sequential(nn.Linear(4 * hidden, 4 * hidden), nn.LayerNorm(4 * hidden), nn.GELU(),
                                    nn.Linear(4 * hidden, dim))
        make_pool = (lambda c: SplatPool(c)) if pooling == "splat" else (lambda c: MaxPool())
        self.pool_first, self.pool_second = make_pool(2 * hidden), make_pool(dim)

    def forward(self, values: Tensor) -> Tensor:
        """(B, N, k * A) -> (B, N, dim)."""
        b, n, _ = values.shape
        x = values.reshape(b, n, -1, self.attributes)  # [B, N, k, A]
        x = self.first(x)  # [B, N, k, 2h]
        pooled = self.pool_first(x)  # [B, N, 2h]
        x = torch.cat([pooled[:, :, None].expand_as(x), x], dim=-1)  # [B, N, k, 4h]
        return self.pool_second(self.second(x))  # [B, N, dim]
