"""Registers the splat modality, data sets and recipes with omnissl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_splat.datasets import GeneratedShapes, SplatFolder
from omnissl_splat.modality import SplatModality


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"splat": SplatModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"splat_folder": SplatFolder, "splat_shapes": GeneratedShapes}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
