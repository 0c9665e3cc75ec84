"""Readers of molecule files: SMILES tables (CSV, SMI) and SDF, record by record.

Each reader yields :class:`MoleculeRecord` objects, one per line or SDF record, with the
parsed RDKit molecule or the reason it could not be parsed; the data set decides what to
skip and how to warn. RDKit writes its errors from C++ straight to the process's stderr,
naming no file; :func:`rdkit_errors` keeps them off the console and hands them back, so the
one skip warning per bad molecule names the file and line or record *and* RDKit's reason.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from rdkit import Chem, rdBase

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


T = TypeVar("T")
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")  # RDKit's "[hh:mm:ss] " prefix
MAX_REASON = 400  # characters of RDKit's log quoted in one warning


def tidy_rdkit_log(text: str, echo: str = "") -> str:
    """RDKit's error lines as one short reason: time stamps, ``ERROR:`` prefixes, the
    ``~~~^`` pointer, the echo of the input (``echo``), repeated lines and a topic prefix
    repeated from the first line (``SMILES Parse Error:``) removed."""
    lines: list[str] = []
    topic = ""
    for line in text.splitlines():
        line = _STAMP.sub("", line).strip()
        line = re.sub(r"^ERROR:\s*", "", line).rstrip(":").strip()
        if topic and line.startswith(topic):
            line = line[len(topic):].strip()
        if not line or set(line) <= set("~^ ") or (echo and line == echo) or line in lines:
            continue
        if not lines:
            topic = line.split(": ", 1)[0] + ": " if ": " in line else ""
        lines.append(line)
    reason = "; ".join(lines)
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."


@contextlib.contextmanager
def rdkit_errors(echo: str = "") -> Iterator[list[str]]:
    """Keep every RDKit log line off the console, and collect the error channel's lines.

    Yields a list that holds, once the block has exited, RDKit's reason (see
    :func:`tidy_rdkit_log`) or nothing. ``BlockLogs`` restores each channel as it was
    (``DisableLog``/``EnableLog`` would switch on the info and debug channels that RDKit keeps
    off, and a nested pair re-enabled logging half-way through a file); with an RDKit too old
    for ``CaptureErrorLog`` the lines are silenced but not quoted. Use it around single RDKit
    calls, not around a ``yield``, so that nothing stays silenced while the caller's code runs.

    Args:
        echo: the input (a SMILES) as RDKit repeats it on a line of its own, left out of the reason.
    """
    reason: list[str] = []
    capture_type = getattr(rdBase, "CaptureErrorLog", None)
    with rdBase.BlockLogs():
        if capture_type is None:
            yield reason
            return
        capture = capture_type()
        try:
            with capture:
                yield reason
        finally:
            text = tidy_rdkit_log(capture.messages, echo)
            if text:
                reason.append(text)


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's console output for the block (its lines name no file); our warnings replace them."""
    with rdkit_errors():
        yield


def call_rdkit(function: Callable[..., T], *args: object, echo: str = "") -> tuple[T | None, str]:
    """``function(*args)`` with RDKit's logging captured: (result or None, RDKit's reason or "").

    An exception RDKit raises (a failed sanitisation, an invariant violation) counts as a
    failure too: its message joins the logged lines.
    """
    with rdkit_errors(echo) as reason:
        try:
            result = function(*args)
        except (RuntimeError, ValueError) as exc:  # RDKit's C++ exceptions arrive as these
            result, error = None, str(exc).strip()
        else:
            error = ""
    text = "; ".join(reason + ([error] if error and error not in "".join(reason) else []))
    return result, text


def _because(reason: str) -> str:
    return f" (RDKit: {reason})" if reason else ""


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
    with open(path, newline="") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith(("#", "//")) or text.lower().startswith("smiles"):
                continue
            smiles = text.split()[0]
            mol, reason = call_rdkit(mol_from_smiles, smiles, hydrogens, echo=smiles)
            yield MoleculeRecord(f"{path}, line {number}", mol, math.nan,
                                 "" if mol is not None else f"invalid SMILES {smiles!r}{_because(reason)}")


def _read_csv(path: Path, smiles_column: str, label: str | None, hydrogens: bool) -> Iterator[MoleculeRecord]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="") as handle:
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
            mol, reason = call_rdkit(mol_from_smiles, smiles, hydrogens, echo=smiles) if smiles else (None, "")
            error = "" if mol is not None else (f"invalid SMILES {smiles!r}{_because(reason)}" if smiles
                                                else "empty SMILES")
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
        count = len(supplier)
    for number in range(count):
        mol, reason = call_rdkit(supplier.__getitem__, number)
        where = f"{path}, record {number + 1}"
        if mol is None:
            yield MoleculeRecord(where, None, math.nan, "unreadable SDF record " + (
                f"(RDKit: {reason})" if reason else "(RDKit could not parse or sanitise it)"))
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
