"""Cut 1-D, 2-D or 3-D arrays with channels into non-overlapping patches and back.

The ViT patch embedding (Dosovitskiy et al., 2021) and MAE's ``patchify``,
generalised to any number of spatial axes: signals (C, T), images (C, H, W),
volumes (C, D, H, W) and spectrograms (C, time, freq) all use this one class.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from omnissl.tokens import CoordGroup, Tokens


class GridPatchifier:
    """Patchify arrays of shape (channels, *spatial) into tokens with grid coordinates.

    Each token's ``values`` is its patch flattened channel-first, i.e. (C, p1, p2, ...)
    in C order; its ``coords`` are the patch's integer grid index along each axis.

    Args:
        patch_size: patch extent along each spatial axis (an int means the same on every axis).
        channels: number of channels C.
        ndim: number of spatial axes (1, 2 or 3); taken from ``patch_size`` when it is a sequence.
    """

    def __init__(self, patch_size: int | Sequence[int], channels: int, ndim: int | None = None):
        if isinstance(patch_size, int):
            if ndim is None:
                raise ValueError("GridPatchifier needs ndim when patch_size is an int")
            patch_size = (patch_size,) * ndim
        self.patch_size = tuple(int(p) for p in patch_size)
        if not 1 <= len(self.patch_size) <= 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must have 1 to 3 positive entries, got {self.patch_size}")
        self.channels = int(channels)

    @property
    def ndim(self) -> int:
        return len(self.patch_size)

    @property
    def value_dim(self) -> int:
        return self.channels * math.prod(self.patch_size)

    @property
    def coord_group(self) -> CoordGroup:
        return CoordGroup("grid", self.ndim)

    def grid_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Number of patches along each axis for an array of spatial shape ``spatial``."""
        out = []
        for axis, (size, p) in enumerate(zip(spatial, self.patch_size)):
            if size % p:
                raise ValueError(f"axis {axis} has size {size}, not a multiple of the patch size {p}; "
                                 f"crop or pad the array first")
            out.append(size // p)
        return tuple(out)

    def patchify(self, array: Tensor) -> Tensor:
        """(..., C, *spatial) -> (..., num_patches, C * prod(patch_size))."""
        lead = array.shape[: array.ndim - self.ndim - 1]
        c, spatial = array.shape[len(lead)], array.shape[len(lead) + 1:]
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c} (array shape {tuple(array.shape)})")
        grid = self.grid_shape(spatial)
        # (..., C, g1, p1, g2, p2, ...) -> (..., g1, g2, ..., C, p1, p2, ...)
        split = [s for g, p in zip(grid, self.patch_size) for s in (g, p)]
        x = array.reshape(*lead, c, *split)
        k = len(lead)
        grid_axes = [k + 1 + 2 * i for i in range(self.ndim)]
        patch_axes = [k + 2 + 2 * i for i in range(self.ndim)]
        x = x.permute(*range(k), *grid_axes, k, *patch_axes)
        return x.reshape(*lead, math.prod(grid), self.value_dim)

    def unpatchify(self, values: Tensor, grid: Sequence[int]) -> Tensor:
        """(..., num_patches, C * prod(patch_size)) -> (..., C, *spatial); inverse of :meth:`patchify`."""
        lead = values.shape[:-2]
        k = len(lead)
        x = values.reshape(*lead, *grid, self.channels, *self.patch_size)
        order = [k + self.ndim]  # channels first
        for i in range(self.ndim):
            order += [k + i, k + self.ndim + 1 + i]
        x = x.permute(*range(k), *order)
        return x.reshape(*lead, self.channels, *(g * p for g, p in zip(grid, self.patch_size)))

    def grid_coords(self, grid: Sequence[int]) -> Tensor:
        """(num_patches, ndim) float grid index of each patch, in :meth:`patchify` order."""
        axes = [torch.arange(g, dtype=torch.float32) for g in grid]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))

    def __call__(self, array: Tensor) -> Tokens:
        """Tokens of one (C, *spatial) array; ``meta['grid']`` keeps the grid shape."""
        grid = self.grid_shape(array.shape[1:])
        return Tokens(values=self.patchify(array), coords=self.grid_coords(grid), meta={"grid": grid})
