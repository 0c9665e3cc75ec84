"""The molecule modality: atoms as tokens, conformer xyz as coordinates, pair relations as bias."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnissl import CoordGroup, Modality, TargetStream, TokenBatch, Tokens, TokenSpec
from omnissl.errors import RecipeError
from omnissl.recipe import Range
from omnissl_molecule.features import ATOM_KIND_COLUMNS, ATOM_VALUE_DIM, ELEMENTS, MoleculeArrays
from omnissl_molecule.relations import RelationChannels

NUM_ELEMENTS = len(ELEMENTS) + 1


def element_cross_entropy(pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy per atom: (M, num_elements) logits, (M, 1) class index as float -> (M,)."""
    return F.cross_entropy(pred.float(), target[:, 0].long(), reduction="none")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (QR of a Gaussian matrix, sign-corrected)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(np.float32)


class MoleculeModality(Modality):
    """Molecules as one token per atom (GraphMAE / Uni-Mol style).

    Tokens: ``kinds`` holds the seven categorical atom features (element, formal charge,
    aromaticity, hybridisation, hydrogen count, ring membership, chirality), all declared
    content so a hidden atom shows none of them; ``values`` holds degree / 4 and mass / 100;
    ``coords`` the centred conformer xyz in Å (randomly rotated during training: the
    relations are rotation-invariant, the absolute coordinates are not); ``attn_bias`` the
    (n, n, R) relations of :class:`~omnissl_molecule.relations.RelationChannels`.
    The target stream ``element`` is scored with cross-entropy.

    Samples are dicts with ``molecule``: a :class:`~omnissl_molecule.features.MoleculeArrays`.

    Args:
        max_path: shortest paths of this many bonds or more share one relation channel.
        distance_kernels: Gaussian basis functions of the 3-D distance.
        cutoff: largest basis centre in Å.
        coord_scale: length scale of the coordinates' Fourier position features, in Å.
        rotate: randomly rotate the coordinates of training samples.
        element_weight: weight of the masked-element cross-entropy in the loss.
    """

    name = "molecule"

    def __init__(self, max_path: Annotated[int, Range(ge=1)] = 6, distance_kernels: Annotated[int, Range(ge=1)] = 16,
                 cutoff: Annotated[float, Range(gt=0)] = 8.0,
                 coord_scale: Annotated[float, Range(gt=0)] = 4.0, rotate: bool = True,
                 element_weight: Annotated[float, Range(ge=0)] = 1.0):
        if max_path < 1 or distance_kernels < 1 or cutoff <= 0 or coord_scale <= 0:
            raise RecipeError("modality: max_path and distance_kernels must be >= 1, cutoff and coord_scale > 0")
        self.relations = RelationChannels(max_path, distance_kernels, cutoff)
        self.coord_scale = coord_scale
        self.rotate = rotate
        self.element_weight = element_weight

    def spec(self) -> TokenSpec:
        vocab = tuple(size for _, size in ATOM_KIND_COLUMNS)
        return TokenSpec(value_dim=ATOM_VALUE_DIM, coords=(CoordGroup("continuous", 3, self.coord_scale),),
                         kind_vocab=vocab, bias_channels=self.relations.channels,
                         content_kinds=tuple(range(len(vocab))))

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        mol: MoleculeArrays = sample["molecule"]
        coords = mol.coords
        if rng is not None and self.rotate:
            coords = coords @ random_rotation(rng).T
        kinds = torch.from_numpy(mol.kinds.astype(np.int64))
        return Tokens(
            values=torch.from_numpy(mol.values),
            coords=torch.from_numpy(np.ascontiguousarray(coords, dtype=np.float32)),
            kinds=kinds,
            attn_bias=torch.from_numpy(self.relations.build(mol.path, mol.bonds, mol.distance, mol.has_3d)),
            targets={"element": kinds[:, :1].float()},
            meta={"smiles": mol.smiles, "has_3d": mol.has_3d},
        )

    def target_streams(self) -> list[TargetStream]:
        return [TargetStream("element", dim=NUM_ELEMENTS, loss=element_cross_entropy, weight=self.element_weight,
                             normalize=False)]

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """ECFP4 (Morgan radius 2, 2,048 bits; Rogers & Hahn, J. Chem. Inf. Model. 2010) of the molecule."""
        from rdkit.Chem import rdFingerprintGenerator

        from omnissl_molecule.features import mol_from_smiles

        generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
        mol = mol_from_smiles(sample["molecule"].smiles, hydrogens=False)
        return generator.GetFingerprintAsNumPy(mol).astype(np.float32)

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        from omnissl_molecule.draw import draw_masked_molecules

        return draw_masked_molecules(batch, hidden, predictions["element"], path)
