"""Spectrogram grids for the reconstruction PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def plot_spectrograms(rows: Sequence[Sequence[np.ndarray]], names: Sequence[str], titles: Sequence[str],
                      patch_frames: int, path: Path) -> Path:
    """Draw a grid of (frames, bins) spectrograms: one row per clip, one column per title.

    Time runs left to right and frequency bottom to top; NaN (masked or absent patches) is
    drawn light grey. All panels of a row share one colour scale, the original's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(rows), len(titles)
    fig, axes = plt.subplots(n, k, figsize=(3.2 * k, 1.7 * n + 0.6), dpi=110, squeeze=False)
    for r, (row, name) in enumerate(zip(rows, names)):
        finite = row[0][np.isfinite(row[0])]
        low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
        for c, image in enumerate(row):
            ax = axes[r][c]
            cmap = matplotlib.colormaps["magma"].with_extremes(bad="#d9d9d9")
            ax.imshow(np.ma.masked_invalid(image.T), origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        axes[r][0].set_ylabel(name, fontsize=6)
    fig.supxlabel(f"time (frames; patches of {patch_frames})", fontsize=8)
    fig.supylabel("mel bin", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
