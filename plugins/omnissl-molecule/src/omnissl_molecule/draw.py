"""Drawing masked-atom predictions with RDKit: hidden atoms highlighted, predicted elements noted."""

from __future__ import annotations

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import Draw
from torch import Tensor

from omnissl import TokenBatch
from omnissl_molecule.features import ELEMENTS, mol_from_smiles

CORRECT = (0.55, 0.85, 0.55)
WRONG = (0.95, 0.55, 0.55)


def element_symbol(index: int) -> str:
    return ELEMENTS[index] if index < len(ELEMENTS) else "?"


def draw_masked_molecules(batch: TokenBatch, hidden: Tensor, element_logits: Tensor, path: Path,
                          per_row: int = 4) -> Path:
    """A grid of the batch's molecules: hidden atoms highlighted (green where the predicted
    element is right, red where wrong), each noted with its predicted element.

    Args:
        batch: the drawn samples; ``meta[i]["smiles"]`` lists the atoms in token order.
        hidden: (B, N) bool, atoms the model did not see.
        element_logits: (B, N, num_elements) predictions (valid where ``hidden``).
        path: the PNG to write.
    """
    predicted = element_logits.argmax(-1)  # [B, N]
    truth = batch.targets["element"][..., 0].long()  # [B, N]
    mols, highlights, colours, legends = [], [], [], []
    for i, meta in enumerate(batch.meta):
        mol = mol_from_smiles(meta["smiles"], hydrogens=True)
        atoms = hidden[i].nonzero().squeeze(1).tolist()
        colour = {}
        for j in atoms:
            note = element_symbol(int(predicted[i, j]))
            mol.GetAtomWithIdx(j).SetProp("atomNote", note)
            colour[j] = CORRECT if int(predicted[i, j]) == int(truth[i, j]) else WRONG
        right = sum(int(predicted[i, j]) == int(truth[i, j]) for j in atoms)
        Chem.rdDepictor.Compute2DCoords(mol)
        mols.append(mol)
        highlights.append(atoms)
        colours.append(colour)
        legends.append(f"{right}/{len(atoms)} hidden atoms right")
    image = Draw.MolsToGridImage(mols, molsPerRow=min(per_row, len(mols)), subImgSize=(300, 260),
                                 legends=legends, highlightAtomLists=highlights,
                                 highlightAtomColors=colours, returnPNG=False)
    image.save(str(path))
    return path
