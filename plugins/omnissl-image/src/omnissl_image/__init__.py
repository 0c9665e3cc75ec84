"""Images for omnissl."""

from omnissl_image.datasets import DigitsDataset, ImageFolder, NumpyImages, SkimageTiles
from omnissl_image.modality import ImageModality

__version__ = "0.1.0"
__all__ = ["ImageModality", "DigitsDataset", "ImageFolder", "NumpyImages", "SkimageTiles"]
