"""Readers of molecule files: SMILES tables (CSV, SMI) and SDF, record by record.

Each reader yields :class:`MoleculeRecord` objects, one per line or SDF record, with the
parsed RDKit molecule or the reason it could not be parsed; the data set decides what to
skip and how to warn. RDKit's own console logging is silenced while parsing, because the
warnings here name the file and the line or record instead.
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rdkit import Chem, RDLogger

from omnissl.errors import DataError
from omnissl_molecule.features import mol_from_smiles

TABLE_SUFFIXES = (".csv", ".tsv", ".smi", ".smiles")
SDF_SUFFIXES = (".sdf", ".sd", ".mol")
SUFFIXES = TABLE_SUFFIXES + SDF_SUFFIXES


@dataclass
class MoleculeRecord:
    """One molecule as read from a file.

    Attributes:
        where: ``"<file>, line <k>"`` or ``"<file>, record <k>"`` (1-based), for messages.
        mol: the parsed molecule, or None when it could not be parsed.
        label: the value of the label column/property, NaN when absent or not a number.
        error: why ``mol`` is None.
    """

    where: str
    mol: Chem.Mol | None
    label: float = math.nan
    error: str = ""


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's console errors (they name no file); our warnings replace them."""
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_table(path: Path, smiles_column: str, label: str | None, hydrogens: bool) -> Iterator[MoleculeRecord]:
    """Molecules of a CSV/TSV file with a header, or of a SMI file (SMILES first on each line).

    Args:
        path: the file.
        smiles_column: header of the SMILES column in CSV/TSV files (case-insensitive).
        label: header of the label column (CSV/TSV), or None.
        hydrogens: keep explicit hydrogens written in the SMILES.
    """
    if path.suffix.lower() in (".csv", ".tsv"):
        yield from _read_csv(path, smiles_column, label, hydrogens)
        return
    with open(path, newline="") as handle, quiet_rdkit():
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith(("#", "//")) or text.lower().startswith("smiles"):
                continue
            smiles = text.split()[0]
            mol = mol_from_smiles(smiles, hydrogens)
            yield MoleculeRecord(f"{path}, line {number}", mol, math.nan,
                                 "" if mol is not None else f"invalid SMILES {smiles!r}")


def _read_csv(path: Path, smiles_column: str, label: str | None, hydrogens: bool) -> Iterator[MoleculeRecord]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="") as handle, quiet_rdkit():
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        if smiles_column.lower() not in columns:
            raise DataError(f"{path} has no column {smiles_column!r} (columns: {', '.join(columns.values())}); "
                            f"set data.smiles_column to the column that holds SMILES")
        smiles_key = columns[smiles_column.lower()]
        label_key = columns.get(label.lower()) if label else None
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            smiles = (row.get(smiles_key) or "").strip()
            mol = mol_from_smiles(smiles, hydrogens) if smiles else None
            error = "" if mol is not None else (f"invalid SMILES {smiles!r}" if smiles else "empty SMILES")
            yield MoleculeRecord(where, mol, _number(row.get(label_key)) if label_key else math.nan, error)


def read_sdf(path: Path, label: str | None, hydrogens: bool) -> Iterator[MoleculeRecord]:
    """Molecules of an SDF file, with the file's coordinates (used when they are 3-D).

    Args:
        path: the file.
        label: name of the SD property holding the label, or None.
        hydrogens: keep the file's explicit hydrogens (otherwise they are removed later).
    """
    with quiet_rdkit():
        supplier = Chem.SDMolSupplier(str(path), sanitize=True, removeHs=not hydrogens)
        for number in range(len(supplier)):
            mol = supplier[number]
            where = f"{path}, record {number + 1}"
            if mol is None:
                yield MoleculeRecord(where, None, math.nan, "unreadable SDF record (RDKit could not parse or "
                                                            "sanitise it)")
                continue
            value = _number(mol.GetProp(label)) if label and mol.HasProp(label) else math.nan
            yield MoleculeRecord(where, mol, value)


def read_file(path: Path, smiles_column: str, label: str | None, hydrogens: bool) -> Iterator[MoleculeRecord]:
    """Dispatch on the suffix: :func:`read_table` or :func:`read_sdf`."""
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return read_table(path, smiles_column, label, hydrogens)
    if suffix in SDF_SUFFIXES:
        return read_sdf(path, label, hydrogens)
    raise DataError(f"{path}: unknown molecule file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def find_files(paths: list[str]) -> list[Path]:
    """The molecule files named by ``paths``: files as given, folders searched recursively."""
    found: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"data path {path} does not exist (give molecule files or folders of "
                            f"{', '.join(SUFFIXES)} files)")
    if not found:
        raise DataError(f"no molecule file ({', '.join(SUFFIXES)}) under {', '.join(paths)}")
    return found
