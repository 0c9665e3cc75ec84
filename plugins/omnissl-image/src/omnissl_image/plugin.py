"""Registers the image modality, data sets, recipes and the timm exporter with omnissl.

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
imports neither torch nor PIL; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"image": lazy("omnissl_image.modality:ImageModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"image_folder": lazy("omnissl_image.datasets:ImageFolder"),
            "numpy": lazy("omnissl_image.datasets:NumpyImages"),
            "digits": lazy("omnissl_image.datasets:DigitsDataset"),
            "skimage": lazy("omnissl_image.datasets:SkimageTiles")}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    return {"timm": lazy("omnissl_image.export:export_timm")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
