"""On-disk cache of featurised molecules: flat ``.npy`` arrays read back memory-mapped.

Featurisation (parsing, ETKDG embedding, distance matrices) runs once per data set and
settings; later runs and epochs slice memory-mapped arrays and never call RDKit. Atom
arrays are concatenated over molecules with an offset table, pair arrays (n x n per
molecule) likewise, so reading molecule i is four slices. Beside them, one row per
molecule: its targets, source file and row, Bemis-Murcko scaffold and SMILES.

A cold featurisation writes the corpus in chunks of records (:func:`write_cache` per chunk,
under ``<key>.partial/``), so a killed first run resumes from the chunks already written;
:func:`merge_caches` then concatenates them into the final folder, streaming, without holding
the corpus in memory. Every folder is written under a temporary name and renamed when
complete (:func:`omnissl.cache.atomic_folder`), so an interruption never leaves a half-written
chunk or cache behind. A cache is keyed by the featurisation settings and the input files'
names and content (:class:`omnissl.cache.ContentKeys`: a warm start reads no input file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omnissl.cache import ContentKeys, atomic_folder, entry_key, require_finite
from omnissl_molecule.features import MoleculeArrays

ATOM_FIELDS = ("kinds", "values", "coords")
PAIR_FIELDS = ("path", "bonds", "distance")
FLOAT_FIELDS = ("values", "coords", "distance")  # the fields that could hold a non-finite number
ROW_FIELDS = ("has_3d", "targets", "source_file", "source_row")  # one .npy row per molecule
TEXT_FIELDS = ("smiles", "scaffolds")  # one JSON list entry per molecule


def cache_key(files: Sequence[Path], settings: dict[str, Any], keys: ContentKeys) -> str:
    """The key of a featurised corpus: the settings and every file's name and content (``keys``)."""
    return entry_key(json.dumps(settings, sort_keys=True), keys.contents(files))


@dataclass
class MoleculeRows:
    """What the cache keeps about each molecule beside its arrays.

    Attributes:
        targets: (n, T) float64, one column per label column (NaN: no value).
        source_file: (n,) index into the cache's ``info["files"]``.
        source_row: (n,) 1-based data row / line / SDF record in that file.
        scaffolds: n Bemis-Murcko scaffold SMILES ("" for an acyclic molecule).
    """

    targets: np.ndarray
    source_file: np.ndarray
    source_row: np.ndarray
    scaffolds: list[str]


def write_cache(folder: Path, molecules: Sequence[MoleculeArrays], rows: MoleculeRows,
                info: dict[str, Any]) -> None:
    """Write ``molecules``, their ``rows`` and a JSON ``info`` record to ``folder`` atomically.

    Raises:
        omnissl.cache.NonFiniteError: a molecule's float arrays hold NaN or infinity, or a target
            is infinite (NaN targets mean "no label"). The data set skips such molecules before
            they get here; this is the last guard that keeps non-finite numbers out of every cache.
    """
    for m in molecules:
        for name in FLOAT_FIELDS:
            require_finite(getattr(m, name), f"{name} of {m.smiles}")
    targets = np.asarray(rows.targets, dtype=np.float64)
    assert targets.ndim == 2 and len(targets) == len(molecules), "targets must be (molecules, label columns)"
    require_finite(targets, "labels", missing_ok=True)
    with atomic_folder(folder, "featurised molecules") as tmp:
        sizes = np.array([len(m.kinds) for m in molecules], dtype=np.int64)
        np.save(tmp / "atom_offset.npy", np.concatenate([[0], np.cumsum(sizes)]))
        np.save(tmp / "pair_offset.npy", np.concatenate([[0], np.cumsum(sizes ** 2)]))
        for name in ATOM_FIELDS + PAIR_FIELDS:
            parts = [getattr(m, name).reshape(len(m.kinds), -1) if name in ATOM_FIELDS else getattr(m, name).ravel()
                     for m in molecules]
            np.save(tmp / f"{name}.npy", np.concatenate(parts) if parts else _empty(name))
        np.save(tmp / "has_3d.npy", np.array([m.has_3d for m in molecules], dtype=bool))
        np.save(tmp / "targets.npy", targets)
        np.save(tmp / "source_file.npy", np.asarray(rows.source_file, dtype=np.int32))
        np.save(tmp / "source_row.npy", np.asarray(rows.source_row, dtype=np.int64))
        (tmp / "smiles.json").write_text(json.dumps([m.smiles for m in molecules]))
        (tmp / "scaffolds.json").write_text(json.dumps(list(rows.scaffolds)))
        (tmp / "info.json").write_text(json.dumps(info, indent=1))


def _empty(name: str) -> np.ndarray:
    """The array of a chunk without molecules, with the dtype and width a full one would have."""
    from omnissl_molecule.features import ATOM_KIND_COLUMNS, ATOM_VALUE_DIM

    width = {"kinds": len(ATOM_KIND_COLUMNS), "values": ATOM_VALUE_DIM, "coords": 3}
    dtype = np.float32 if name in FLOAT_FIELDS else np.uint8
    return np.zeros((0, width[name]) if name in width else (0,), dtype=dtype)


def merge_caches(folder: Path, parts: Sequence[Path], info: dict[str, Any]) -> None:
    """Concatenate the caches ``parts`` (chunks written by :func:`write_cache`) into ``folder``,
    atomically; arrays are copied part by part into memory-mapped output, never all in memory."""
    with atomic_folder(folder, "featurised molecules") as tmp:
        for name in ("atom_offset", "pair_offset"):
            offsets, base = [np.zeros(1, dtype=np.int64)], 0
            for part in parts:
                own = np.load(part / f"{name}.npy")
                offsets.append(own[1:] + base)
                base += int(own[-1])
            np.save(tmp / f"{name}.npy", np.concatenate(offsets))
        for name in ATOM_FIELDS + PAIR_FIELDS + ROW_FIELDS:
            arrays = [np.load(part / f"{name}.npy", mmap_mode="r") for part in parts]
            shape = (sum(len(a) for a in arrays),) + arrays[0].shape[1:]
            out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=arrays[0].dtype, shape=shape)
            start = 0
            for array in arrays:
                out[start:start + len(array)] = array
                start += len(array)
            out.flush()
            del out, arrays
        for name in TEXT_FIELDS:
            merged: list[str] = []
            for part in parts:
                merged.extend(json.loads((part / f"{name}.json").read_text()))
            (tmp / f"{name}.json").write_text(json.dumps(merged))
        (tmp / "info.json").write_text(json.dumps(info, indent=1))


class CachedMolecules:
    """Read-only view of a cache folder written by :func:`write_cache` or :func:`merge_caches`.

    Args:
        folder: the cache folder.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.atom_offset = np.load(folder / "atom_offset.npy")
        self.pair_offset = np.load(folder / "pair_offset.npy")
        self.arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ATOM_FIELDS + PAIR_FIELDS}
        self.has_3d = np.load(folder / "has_3d.npy")
        self.targets = np.load(folder / "targets.npy")  # (n, T)
        self.source_file = np.load(folder / "source_file.npy")
        self.source_row = np.load(folder / "source_row.npy")
        self.smiles: list[str] = json.loads((folder / "smiles.json").read_text())
        self.scaffolds: list[str] = json.loads((folder / "scaffolds.json").read_text())
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
