"""Registers the image modality, data sets, recipes and the timm exporter with omnissl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_image.datasets import DigitsDataset, ImageFolder, NumpyImages, SkimageTiles
from omnissl_image.modality import ImageModality


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"image": ImageModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"image_folder": ImageFolder, "numpy": NumpyImages, "digits": DigitsDataset, "skimage": SkimageTiles}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    from omnissl_image.export import EXPORTERS

    return dict(EXPORTERS)


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
