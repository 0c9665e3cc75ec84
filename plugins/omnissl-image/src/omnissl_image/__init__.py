"""Images for omnissl.

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_image.plugin``, which imports this package first) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"DigitsDataset": "omnissl_image.datasets", "ImageFolder": "omnissl_image.datasets",
         "NumpyImages": "omnissl_image.datasets", "SkimageTiles": "omnissl_image.datasets",
         "ImageModality": "omnissl_image.modality"}

if TYPE_CHECKING:
    from omnissl_image.datasets import DigitsDataset, ImageFolder, NumpyImages, SkimageTiles
    from omnissl_image.modality import ImageModality

__version__ = "0.1.0"
__all__ = ["ImageModality", "DigitsDataset", "ImageFolder", "NumpyImages", "SkimageTiles"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
