"""Three orthogonal slices (axial, coronal, sagittal) through original / masked / reconstructed crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

PLANES = ("axial", "coronal", "sagittal")


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Central axial (X-Y at mid Z), coronal (X-Z at mid Y) and sagittal (Y-Z at mid X) slices
    of an (X, Y, Z) RAS volume, each transposed so that up is anterior/superior."""
    x, y, z = (s // 2 for s in volume.shape)
    return [volume[:, :, z].T, volume[:, y, :].T, volume[x, :, :].T]


def draw_three_planes(original: Tensor, masked: Tensor, reconstruction: Tensor, path: Path) -> Path:
    """One row per sample; columns: the three planes of the original, the masked input
    (hidden patches hatched in grey) and the reconstruction (visible patches pasted back).

    Args:
        original: (B, X, Y, Z) voxels.
        masked: (B, X, Y, Z) with NaN in hidden patches.
        reconstruction: (B, X, Y, Z).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["gray"].with_extremes(bad="#4a6fa5")  # hidden patches: blue-grey
    rows = original.shape[0]
    fig, axes = plt.subplots(rows, 9, figsize=(13.5, 1.6 * rows + 0.4), dpi=100, squeeze=False)
    for r in range(rows):
        volumes = [v[r].numpy() for v in (original, masked, reconstruction)]
        low, high = np.percentile(volumes[0], [1, 99])
        high = high if high > low else low + 1.0
        for v, (title, volume) in enumerate(zip(("original", "masked", "reconstruction"), volumes)):
            for p, (plane, image) in enumerate(zip(PLANES, mid_slices(volume))):
                ax = axes[r][3 * v + p]
                ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=low, vmax=high, origin="lower")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{title}\n{plane}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
