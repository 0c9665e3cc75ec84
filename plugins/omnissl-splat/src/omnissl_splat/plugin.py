"""Registers the splat modality, data sets and recipes with omnissl.

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
imports nothing heavy; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"splat": lazy("omnissl_splat.modality:SplatModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"splat_folder": lazy("omnissl_splat.datasets:SplatFolder"),
            "splat_shapes": lazy("omnissl_splat.datasets:GeneratedShapes")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
