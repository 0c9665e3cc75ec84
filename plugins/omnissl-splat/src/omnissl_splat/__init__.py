"""3-D Gaussian splats for omnissl: PLY reading, FPS + kNN group tokens, Gaussian-MAE losses.

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_splat.plugin``, which imports this package first) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"GeneratedShapes": "omnissl_splat.datasets", "SplatFolder": "omnissl_splat.datasets",
         "generate_shapes": "omnissl_splat.generate", "SplatModality": "omnissl_splat.modality",
         "read_splat_ply": "omnissl_splat.ply", "write_splat_ply": "omnissl_splat.ply"}

if TYPE_CHECKING:
    from omnissl_splat.datasets import GeneratedShapes, SplatFolder
    from omnissl_splat.generate import generate_shapes
    from omnissl_splat.modality import SplatModality
    from omnissl_splat.ply import read_splat_ply, write_splat_ply

__version__ = "0.1.0"
__all__ = ["SplatModality", "SplatFolder", "GeneratedShapes", "generate_shapes", "read_splat_ply",
           "write_splat_ply"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
