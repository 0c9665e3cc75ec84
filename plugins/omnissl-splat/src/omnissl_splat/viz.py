"""Reconstruction plot: original and reconstructed splat centres in 3-D, hidden groups marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from omnissl.tokens import TokenBatch
from omnissl_splat.ply import ATTRIBUTES, NUM_ATTRIBUTES

MAX_OBJECTS = 6


def absolute_members(values: Tensor, centres: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Group tokens (G, k * 14) at centres (G, 3) -> member xyz (G, k, 3) and colours (G, k, 3) in [0, 1]."""
    members = values.float().reshape(values.shape[0], -1, NUM_ATTRIBUTES)
    xyz = members[..., ATTRIBUTES["xyz"]] + centres.float()[:, None]
    colour = members[..., ATTRIBUTES["colour"]].clamp(0, 1)
    return xyz.numpy(), colour.numpy()


def plot_splat_reconstructions(batch: TokenBatch, hidden: Tensor, predictions: Tensor, path: Path) -> Path:
    """Top row: each object's Gaussians in their own colour, hidden groups faded with their centres
    marked (black x). Bottom row: visible groups as they are plus the predicted Gaussians of the
    hidden groups in their predicted colours.

    Args:
        batch: grouped tokens, values (B, G, k * 14), coords (B, G, 3), pad (B, G).
        hidden: (B, G) bool.
        predictions: (B, G, k * 14) predicted groups (valid where ``hidden``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(batch.batch_size, MAX_OBJECTS)
    fig = plt.figure(figsize=(3.0 * n, 6.2), dpi=100)
    for col in range(n):
        real = ~batch.pad[col]
        xyz, colour = absolute_members(batch.values[col], batch.coords[col])
        pred_xyz, pred_colour = absolute_members(predictions[col], batch.coords[col])
        shown = (real & ~hidden[col]).numpy()
        masked = (real & hidden[col]).numpy()
        top = fig.add_subplot(2, n, col + 1, projection="3d")
        top.scatter(*xyz[shown].reshape(-1, 3).T, c=colour[shown].reshape(-1, 3), s=2, depthshade=False)
        top.scatter(*xyz[masked].reshape(-1, 3).T, c=colour[masked].reshape(-1, 3), s=2, alpha=0.15,
                    depthshade=False)
        top.scatter(*batch.coords[col][torch.from_numpy(masked)].numpy().T, c="black", marker="x", s=14)
        bottom = fig.add_subplot(2, n, n + col + 1, projection="3d")
        bottom.scatter(*xyz[shown].reshape(-1, 3).T, c=colour[shown].reshape(-1, 3), s=2, depthshade=False)
        bottom.scatter(*pred_xyz[masked].reshape(-1, 3).T, c=pred_colour[masked].reshape(-1, 3), s=2,
                       depthshade=False)
        for ax in (top, bottom):
            ax.set_xlim(-1, 1)
            ax.set_ylim(-1, 1)
            ax.set_zlim(-1, 1)
            ax.set_axis_off()
        top.set_title(f"original ({int(masked.sum())}/{int(real.sum())} groups hidden)", fontsize=8)
        bottom.set_title("visible + reconstructed", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
