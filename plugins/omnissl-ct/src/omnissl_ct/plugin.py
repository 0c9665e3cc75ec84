"""Registers the CT modality, the volume data sets and the ct/ recipes with omnissl.

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
does not import MONAI or nibabel; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy

EXPORTER_NAMES = ("monai-unetr", "monai-vit")  # the keys of omnissl_ct.export.EXPORTERS (a test checks)


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"ct": lazy("omnissl_ct.modality:CTModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"ct_volumes": lazy("omnissl_ct.datasets:CTVolumes"), "ct_phantoms": lazy("omnissl_ct.datasets:CTPhantoms")}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    return {name: lazy("omnissl_ct.export:EXPORTERS", name) for name in EXPORTER_NAMES}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
