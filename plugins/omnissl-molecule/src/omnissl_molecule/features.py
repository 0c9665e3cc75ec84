"""RDKit featurisation of one molecule: atom categories, a 2-D relation prior and a 3-D conformer.

Atoms become tokens in RDKit's canonical SMILES output order, so the same molecule read
from a SMILES string or from an SDF record gives the same tokens, and the canonical SMILES
kept with it rebuilds the molecule atom for atom when drawing. The categorical atom features
follow the ones shared by Hu et al. ("Strategies for Pre-training Graph Neural Networks",
ICLR 2020) and GraphMAE (Hou et al., KDD 2022); the pair relations follow Uni-Mol
(Zhou et al., ICLR 2023: 3-D distances) and Graphormer (Ying et al., NeurIPS 2021:
shortest-path distances) and MoleBLEND (Yu et al., ICLR 2024: both in one matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

# Elements of drug-like chemistry; anything else falls into the last ("other") class.
ELEMENTS: tuple[str, ...] = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I")
HYBRIDISATIONS = (Chem.HybridizationType.S, Chem.HybridizationType.SP, Chem.HybridizationType.SP2,
                  Chem.HybridizationType.SP3, Chem.HybridizationType.SP3D, Chem.HybridizationType.SP3D2)
CHIRALITIES = (Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW,
               Chem.ChiralType.CHI_TETRAHEDRAL_CCW)
BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)

# One entry per `kinds` column: (name, vocabulary size). Every column is atom *content*.
ATOM_KIND_COLUMNS: tuple[tuple[str, int], ...] = (
    ("element", len(ELEMENTS) + 1),
    ("formal_charge", 5),        # -2 .. +2, clipped
    ("aromatic", 2),
    ("hybridisation", len(HYBRIDISATIONS) + 1),
    ("hydrogens", 5),            # total attached H, 0 .. 4 (clipped)
    ("in_ring", 2),
    ("chirality", len(CHIRALITIES) + 1),
)
NUM_BOND_CLASSES = len(BOND_TYPES) + 1  # aromatic/single/double/triple and "other"; 0 = no bond
ATOM_VALUE_DIM = 2  # degree / 4, mass / 100
MAX_PATH = 255      # shortest-path lengths are stored as uint8; disconnected pairs get this value
# Bump when the arrays below change meaning, or which molecules are kept: it is part of the cache key.
# 2: molecules with an infinite label or non-finite coordinates are skipped (older caches may hold them).
# 3: several label columns (targets.npy), each molecule's source file and row, its scaffold; written in chunks.
FEATURE_VERSION = 3


@dataclass
class MoleculeArrays:
    """The featurised molecule, in token order.

    Attributes:
        kinds: (n, len(ATOM_KIND_COLUMNS)) uint8 atom categories.
        values: (n, ATOM_VALUE_DIM) float32 continuous atom features.
        coords: (n, 3) float32 centred conformer coordinates in Å (a 2-D depiction, z = 0,
            when no 3-D conformer exists).
        path: (n, n) uint8 shortest-path lengths in bonds (MAX_PATH between fragments).
        bonds: (n, n) uint8 bond class, 0 where atoms are not bonded.
        distance: (n, n) float32 3-D distances in Å (zeros when ``has_3d`` is False).
        has_3d: whether ``coords`` and ``distance`` come from a 3-D conformer.
        smiles: canonical SMILES whose atom order is the token order.
    """

    kinds: np.ndarray
    values: np.ndarray
    coords: np.ndarray
    path: np.ndarray
    bonds: np.ndarray
    distance: np.ndarray
    has_3d: bool
    smiles: str


def element_index(symbol: str) -> int:
    """Class index of an element symbol (the last class for elements outside ELEMENTS)."""
    return ELEMENTS.index(symbol) if symbol in ELEMENTS else len(ELEMENTS)


def _category(value: object, choices: tuple) -> int:
    return choices.index(value) if value in choices else len(choices)


def atom_kinds(atom: Chem.Atom) -> list[int]:
    """One class index per ATOM_KIND_COLUMNS entry."""
    return [
        element_index(atom.GetSymbol()),
        int(np.clip(atom.GetFormalCharge(), -2, 2)) + 2,
        int(atom.GetIsAromatic()),
        _category(atom.GetHybridization(), HYBRIDISATIONS),
        min(atom.GetTotalNumHs(), 4),
        int(atom.IsInRing()),
        _category(atom.GetChiralTag(), CHIRALITIES),
    ]


def canonical_order(mol: Chem.Mol) -> tuple[Chem.Mol, str]:
    """The molecule renumbered to its canonical SMILES atom order, and that SMILES.

    Parsing the returned SMILES with :func:`mol_from_smiles` yields the atoms in the same
    order, which is how the visualiser finds the atom of each token.
    """
    smiles = Chem.MolToSmiles(mol)
    order = list(mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"])
    return Chem.RenumberAtoms(mol, order), smiles


def mol_from_smiles(smiles: str, hydrogens: bool) -> Chem.Mol | None:
    """Parse a SMILES string; explicit [H] atoms are kept when ``hydrogens`` (token-order SMILES)."""
    params = Chem.SmilesParserParams()
    params.removeHs = not hydrogens
    return Chem.MolFromSmiles(smiles, params)


def embed_conformer(mol: Chem.Mol, seed: int) -> Chem.Mol | None:
    """An ETKDGv3 conformer (Wang et al., J. Chem. Inf. Model. 2020) with a fixed seed, or None.

    Embedding runs with explicit hydrogens, as RDKit recommends; they are removed again
    afterwards only if the input had none.
    """
    with_h = Chem.AddHs(mol, addCoords=False)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    params.timeout = 10
    if AllChem.EmbedMolecule(with_h, params) != 0:
        return None
    return with_h if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) else Chem.RemoveHs(with_h)


def featurize(mol: Chem.Mol, hydrogens: bool, seed: int) -> tuple[MoleculeArrays, bool]:
    """Featurise a sanitised molecule.

    Args:
        mol: an RDKit molecule; a 3-D conformer it already carries (from an SDF file) is kept.
        hydrogens: keep explicit hydrogens as tokens (otherwise heavy atoms only).
        seed: ETKDG random seed, used when the molecule has no 3-D conformer.
    Returns:
        (arrays, embed_failed): ``embed_failed`` is True when ETKDG could not embed the molecule
        and the arrays fall back to 2-D relations and depiction coordinates.
    """
    mol = Chem.AddHs(mol, addCoords=True) if hydrogens else Chem.RemoveHs(mol)
    has_file_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
    embedded = mol if has_file_3d else embed_conformer(mol, seed)
    embed_failed = embedded is None
    if embed_failed:
        embedded = Chem.Mol(mol)
        AllChem.Compute2DCoords(embedded)
    embedded, smiles = canonical_order(embedded)
    n = embedded.GetNumAtoms()
    xyz = np.asarray(embedded.GetConformer().GetPositions(), dtype=np.float32)  # [n, 3]
    xyz -= xyz.mean(axis=0, keepdims=True)
    path = Chem.GetDistanceMatrix(embedded)  # [n, n] bonds; 1e8 between fragments
    bonds = np.zeros((n, n), dtype=np.uint8)
    for bond in embedded.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = _category(bond.GetBondType(), BOND_TYPES) + 1
    distance = (np.zeros((n, n), dtype=np.float32) if embed_failed
                else Chem.Get3DDistanceMatrix(embedded).astype(np.float32))
    atoms = list(embedded.GetAtoms())
    arrays = MoleculeArrays(
        kinds=np.array([atom_kinds(a) for a in atoms], dtype=np.uint8).reshape(n, len(ATOM_KIND_COLUMNS)),
        values=np.array([[a.GetDegree() / 4.0, a.GetMass() / 100.0] for a in atoms], dtype=np.float32),
        coords=xyz,
        path=np.minimum(path, MAX_PATH).astype(np.uint8),
        bonds=bonds,
        distance=distance,
        has_3d=not embed_failed,
        smiles=smiles,
    )
    return arrays, embed_failed
