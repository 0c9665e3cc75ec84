"""On-disk cache of featurised molecules: flat ``.npy`` arrays read back memory-mapped.

Featurisation (parsing, ETKDG embedding, distance matrices) runs once per data set and
settings; later runs and epochs slice memory-mapped arrays and never call RDKit. Atom
arrays are concatenated over molecules with an offset table, pair arrays (n x n per
molecule) likewise, so reading molecule i is four slices. A cache folder is written under
a temporary name and renamed when complete, so an interrupted featurisation never leaves
a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omnissl_molecule.features import MoleculeArrays

ATOM_FIELDS = ("kinds", "values", "coords")
PAIR_FIELDS = ("path", "bonds", "distance")
FLOAT_FIELDS = ("values", "coords", "distance")  # the fields that could hold a non-finite number


def default_cache_dir() -> Path:
    """``$OMNISSL_CACHE/molecule``, else ``$XDG_CACHE_HOME/omnissl/molecule`` (``~/.cache`` by default)."""
    if os.environ.get("OMNISSL_CACHE"):
        return Path(os.environ["OMNISSL_CACHE"]) / "molecule"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "omnissl" / "molecule"


def cache_key(files: Sequence[Path], settings: dict[str, Any]) -> str:
    """SHA-256 of every file's content and the featurisation settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(str(path.name).encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]


def write_cache(folder: Path, molecules: Sequence[MoleculeArrays], labels: np.ndarray,
                info: dict[str, Any]) -> None:
    """Write ``molecules`` (and their labels and a JSON ``info`` record) to ``folder`` atomically.

    Raises:
        ValueError: a molecule's float arrays hold NaN or infinity, or a label is infinite (NaN
            labels mean "no label"). The data set skips such molecules before they get here;
            this is the last guard that keeps non-finite numbers out of every cache.
    """
    for m in molecules:
        bad = [name for name in FLOAT_FIELDS if not np.isfinite(getattr(m, name)).all()]
        if bad:
            raise ValueError(f"refusing to cache {m.smiles}: non-finite {', '.join(bad)}")
    if np.isinf(np.asarray(labels, dtype=np.float64)).any():
        raise ValueError("refusing to cache infinite labels")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        sizes = np.array([len(m.kinds) for m in molecules], dtype=np.int64)
        np.save(tmp / "atom_offset.npy", np.concatenate([[0], np.cumsum(sizes)]))
        np.save(tmp / "pair_offset.npy", np.concatenate([[0], np.cumsum(sizes ** 2)]))
        for name in ATOM_FIELDS:
            np.save(tmp / f"{name}.npy", np.concatenate([getattr(m, name) for m in molecules]))
        for name in PAIR_FIELDS:
            np.save(tmp / f"{name}.npy", np.concatenate([getattr(m, name).ravel() for m in molecules]))
        np.save(tmp / "has_3d.npy", np.array([m.has_3d for m in molecules], dtype=bool))
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.float64))
        (tmp / "smiles.json").write_text(json.dumps([m.smiles for m in molecules]))
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        if folder.exists():  # another process finished the same cache first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class CachedMolecules:
    """Read-only view of a cache folder written by :func:`write_cache`.

    Args:
        folder: the cache folder.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.atom_offset = np.load(folder / "atom_offset.npy")
        self.pair_offset = np.load(folder / "pair_offset.npy")
        self.arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ATOM_FIELDS + PAIR_FIELDS}
        self.has_3d = np.load(folder / "has_3d.npy")
        self.labels = np.load(folder / "labels.npy")
        self.smiles: list[str] = json.loads((folder / "smiles.json").read_text())
        self.info: dict[str, Any] = json.loads((folder / "info.json").read_text())

    def __len__(self) -> int:
        return len(self.smiles)

    def num_atoms(self, index: int) -> int:
        return int(self.atom_offset[index + 1] - self.atom_offset[index])

    def __getitem__(self, index: int) -> MoleculeArrays:
        a0, a1 = self.atom_offset[index], self.atom_offset[index + 1]
        p0, p1 = self.pair_offset[index], self.pair_offset[index + 1]
        n = int(a1 - a0)
        atoms = {name: np.array(self.arrays[name][a0:a1]) for name in ATOM_FIELDS}
        pairs = {name: np.array(self.arrays[name][p0:p1]).reshape(n, n) for name in PAIR_FIELDS}
        return MoleculeArrays(**atoms, **pairs, has_3d=bool(self.has_3d[index]), smiles=self.smiles[index])
