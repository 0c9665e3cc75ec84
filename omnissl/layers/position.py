"""Positional encodings chosen by coordinate kind.

* grid coordinates: fixed N-d sine-cosine (the 2-D form of MAE's
  ``get_2d_sincos_pos_embed``, for any number of axes), computed from the
  coordinates themselves so any grid size and variable lengths work;
* continuous coordinates: random Fourier features (Tancik et al., "Fourier
  Features Let Networks Learn High Frequency Functions", 2020) followed by a
  learned linear map;
* categorical ``kinds``: one learned embedding table per column.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from omnissl.tokens import CoordGroup


class GridSinCos(nn.Module):
    """Fixed N-d sin-cos encoding: the embedding is split evenly across the axes."""

    def __init__(self, num_axes: int, dim: int):
        super().__init__()
        self.num_axes = num_axes
        self.dim = dim
        self.per_axis = (dim // num_axes) // 2 * 2  # even share per axis; the rest stays zero

    def forward(self, coords: Tensor) -> Tensor:
        """(B, N, num_axes) -> (B, N, dim)."""
        half = self.per_axis // 2
        omega = torch.arange(half, device=coords.device, dtype=torch.float32) / max(half, 1)
        omega = 1.0 / 10000.0 ** omega  # [per_axis / 2]
        angle = coords.float()[..., None] * omega  # [B, N, A, per_axis / 2]
        # Per axis [sin | cos], axes side by side: one concatenation for all axes.
        out = torch.cat([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # [B, N, A * per_axis]
        if out.shape[-1] < self.dim:
            out = nn.functional.pad(out, (0, self.dim - out.shape[-1]))
        return out


class FourierFeatures(nn.Module):
    """Random Fourier features of continuous coordinates, then a learned projection.

    Args:
        num_axes: number of coordinate columns.
        dim: output size.
        scale: length scale; coordinates are divided by it before the projection.
        num_frequencies: number of random frequencies (features = 2 x this).
        sigma: standard deviation of the random frequencies (in cycles per unit).
    """

    def __init__(self, num_axes: int, dim: int, scale: float = 1.0, num_frequencies: int = 64,
                 sigma: float = 1.0):
        super().__init__()
        generator = torch.Generator().manual_seed(0)  # fixed: the same features in every run
        self.register_buffer("frequencies", torch.randn(num_axes, num_frequencies, generator=generator) * sigma,
                             persistent=True)
        self.scale = scale
        self.proj = nn.Linear(2 * num_frequencies, dim)

    def forward(self, coords: Tensor) -> Tensor:
        """(B, N, num_axes) -> (B, N, dim)."""
        angle = 2 * math.pi * (coords.float() / self.scale) @ self.frequencies
        return self.proj(torch.cat([angle.sin(), angle.cos()], dim=-1))


class PositionEncoding(nn.Module):
    """Sum of one encoding per coordinate group, in column order."""

    def __init__(self, groups: Sequence[CoordGroup], dim: int):
        super().__init__()
        self.sizes = [g.size for g in groups]
        encoders = []
        for g in groups:
            if g.kind == "grid":
                encoders.append(GridSinCos(g.size, dim))
            elif g.kind == "continuous":
                encoders.append(FourierFeatures(g.size, dim, scale=g.scale))
            else:
                raise ValueError(f"unknown coordinate kind {g.kind!r}; use 'grid' or 'continuous'")
        self.encoders = nn.ModuleList(encoders)

    def forward(self, coords: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, dim)."""
        out = None
        for enc, part in zip(self.encoders, coords.split(self.sizes, dim=-1)):
            e = enc(part)
            out = e if out is None else out + e
        return out


class KindEmbedding(nn.Module):
    """Sum of one learned embedding per ``kinds`` column.

    Args:
        vocab: vocabulary size of each column.
        dim: output size.
        content: columns that are token content; :meth:`forward` leaves them out where ``hidden``.
    """

    def __init__(self, vocab: Sequence[int], dim: int, content: Sequence[int] = ()):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(v, dim) for v in vocab)
        self.content = set(content)
        for t in self.tables:
            nn.init.normal_(t.weight, std=0.02)

    def forward(self, kinds: Tensor, hidden: Tensor | None = None) -> Tensor:
        """(B, N, G) long, optional (B, N) bool hidden -> (B, N, dim)."""
        out = None
        for g, table in enumerate(self.tables):
            e = table(kinds[..., g])
            if hidden is not None and g in self.content:
                e = e.masked_fill(hidden[..., None], 0.0)
            out = e if out is None else out + e
        return out
