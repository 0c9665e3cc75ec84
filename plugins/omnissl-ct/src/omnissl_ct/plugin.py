"""Registers the CT modality, the volume data sets and the ct/ recipes with omnissl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_ct.datasets import CTPhantoms, CTVolumes
from omnissl_ct.modality import CTModality


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"ct": CTModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"ct_volumes": CTVolumes, "ct_phantoms": CTPhantoms}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    from omnissl_ct.export import EXPORTERS

    return dict(EXPORTERS)


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
