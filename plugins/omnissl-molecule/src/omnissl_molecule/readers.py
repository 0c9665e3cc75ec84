"""Readers of molecule files: SMILES tables (CSV, TSV, SMI) and SDF, record by record.

Reading is split in two steps so that the expensive one can run in worker processes:
:func:`iter_records` walks the files and yields each molecule as written
(:class:`RawRecord`: a SMILES string or an SDF record's text, and where it came from),
and :func:`parse_record` turns one into an RDKit molecule and its label values, or the
reason it could not. RDKit writes its errors from C++ straight to the process's stderr,
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
from typing import Callable, Iterator, Sequence, TypeVar

from rdkit import Chem, rdBase

from omnissl.errors import DataError
from omnissl_molecule.features import mol_from_smiles

TABLE_SUFFIXES = (".csv", ".tsv", ".smi", ".smiles")
SDF_SUFFIXES = (".sdf", ".sd", ".mol")
SUFFIXES = TABLE_SUFFIXES + SDF_SUFFIXES
_SD_PROPERTY = re.compile(r"^>.*?<([^>]+)>")  # an SD data header line: "> <name>" or ">  <name>  (1)"


@dataclass
class RawRecord:
    """One molecule as written in a file, not parsed yet (cheap to read and to send to a worker).

    Attributes:
        file: index of the file in the data set's file list.
        row: 1-based position in the file: the data row of a CSV/TSV (header not counted, as
            pandas' index + 1), the line of an SMI file, the record of an SDF file.
        where: ``"<file>, line <k>"`` or ``"<file>, record <k>"``, for messages.
        text: the SMILES, or the SDF record's text up to and including its ``$$$$`` line.
        sdf: whether ``text`` is an SDF record.
        values: a table's raw text of each label column (None where the file lacks the column);
            empty for SDF records, whose properties are read when parsing.
    """

    file: int
    row: int
    where: str
    text: str
    sdf: bool = False
    values: tuple[str | None, ...] = ()


@dataclass
class MoleculeRecord:
    """One parsed molecule.

    Attributes:
        mol: the RDKit molecule, or None when it could not be parsed.
        labels: the value of each label column / SD property, NaN when absent or not a number.
        error: why ``mol`` is None.
    """

    mol: Chem.Mol | None
    labels: tuple[float, ...] = ()
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


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def table_columns(path: Path) -> list[str]:
    """The header of a CSV/TSV file (empty for a file without one)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
    return [name.strip() for name in header]


def sdf_properties(path: Path) -> list[str]:
    """The names of the SD properties (``> <name>`` data headers) anywhere in an SDF file, in order."""
    names: dict[str, None] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _SD_PROPERTY.match(line) if line.startswith(">") else None
            if match:
                names[match.group(1).strip()] = None
    return list(names)


def check_columns(files: Sequence[Path], smiles_column: str, label_columns: Sequence[str]) -> None:
    """Fail before any featurisation when a CSV/TSV file lacks the SMILES column, or when a label
    column is found in no file (a file lacking a column that others have gives NaN there).

    Raises:
        DataError: naming the file(s), the column and the columns (or SD properties) they have.
    """
    found: dict[Path, list[str]] = {}
    for path in files:
        if _is_csv(path):
            columns = table_columns(path)
            if smiles_column.lower() not in {c.lower() for c in columns}:
                raise DataError(f"{path} has no column {smiles_column!r} (columns: {', '.join(columns) or 'none'}); "
                                f"set data.smiles_column to the column that holds SMILES")
            found[path] = columns
        elif path.suffix.lower() in SDF_SUFFIXES and label_columns:
            found[path] = sdf_properties(path)
    for name in label_columns:
        if not any(_has_column(path, columns, name) for path, columns in found.items()):
            have = "; ".join(f"{path.name}: {', '.join(columns) or 'none'}" for path, columns in found.items())
            raise DataError(f"no file has the label column {name!r} named by data.label_column "
                            f"(columns / SD properties: {have or 'none: .smi files carry no labels'}); "
                            f"set data.label_column to one of them")


def _has_column(path: Path, columns: list[str], name: str) -> bool:
    """CSV/TSV headers match case-insensitively (as the SMILES column does); SD properties exactly."""
    return name.lower() in {c.lower() for c in columns} if _is_csv(path) else name in columns


def iter_records(files: Sequence[Path], smiles_column: str, label_columns: Sequence[str]) -> Iterator[RawRecord]:
    """Every molecule record of ``files``, in file order, unparsed (see :class:`RawRecord`)."""
    for index, path in enumerate(files):
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            yield from _csv_records(index, path, smiles_column, label_columns)
        elif suffix in TABLE_SUFFIXES:
            yield from _smi_records(index, path)
        elif suffix in SDF_SUFFIXES:
            yield from _sdf_records(index, path)
        else:
            raise DataError(f"{path}: unknown molecule file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _csv_records(index: int, path: Path, smiles_column: str, label_columns: Sequence[str]) -> Iterator[RawRecord]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        smiles_key = columns[smiles_column.lower()]  # check_columns made sure it exists
        label_keys = [columns.get(name.lower()) for name in label_columns]
        for row_number, row in enumerate(reader, start=1):
            yield RawRecord(index, row_number, f"{path}, line {reader.line_num}", (row.get(smiles_key) or "").strip(),
                            values=tuple(row.get(key) if key else None for key in label_keys))


def _smi_records(index: int, path: Path) -> Iterator[RawRecord]:
    """SMI files: the SMILES is the first word of a line; blank, ``#``/``//`` comment and
    ``smiles`` header lines are not molecules. No label columns."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith(("#", "//")) or text.lower().startswith("smiles"):
                continue
            yield RawRecord(index, number, f"{path}, line {number}", text.split()[0])


def _sdf_records(index: int, path: Path) -> Iterator[RawRecord]:
    """SDF records split at their ``$$$$`` lines, as RDKit's SDMolSupplier splits them."""
    lines: list[str] = []
    number = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            lines.append(line)
            if line.startswith("$$$$"):
                number += 1
                yield RawRecord(index, number, f"{path}, record {number}", "".join(lines), sdf=True)
                lines = []
    if "".join(lines).strip():  # a last record without its "$$$$" line
        number += 1
        yield RawRecord(index, number, f"{path}, record {number}", "".join(lines) + "\n$$$$\n", sdf=True)


def parse_record(record: RawRecord, label_columns: Sequence[str], hydrogens: bool) -> MoleculeRecord:
    """The molecule of ``record`` and its label values (NaN where absent or not a number).

    Args:
        record: from :func:`iter_records`.
        label_columns: the label columns (tables) or SD property names, in order.
        hydrogens: keep the explicit hydrogens written in the SMILES or the SDF record.
    """
    if record.sdf:
        return _parse_sdf(record.text, label_columns, hydrogens)
    labels = tuple(_number(value) for value in record.values) or (math.nan,) * len(label_columns)
    if not record.text:
        return MoleculeRecord(None, labels, "empty SMILES")
    mol, reason = call_rdkit(mol_from_smiles, record.text, hydrogens, echo=record.text)
    return MoleculeRecord(mol, labels, "" if mol is not None else f"invalid SMILES {record.text!r}{_because(reason)}")


def _parse_sdf(text: str, label_columns: Sequence[str], hydrogens: bool) -> MoleculeRecord:
    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, sanitize=True, removeHs=not hydrogens)
    mol, reason = call_rdkit(supplier.__getitem__, 0)
    if mol is None:
        return MoleculeRecord(None, (math.nan,) * len(label_columns), "unreadable SDF record " + (
            f"(RDKit: {reason})" if reason else "(RDKit could not parse or sanitise it)"))
    return MoleculeRecord(mol, tuple(_number(mol.GetProp(name)) if mol.HasProp(name) else math.nan
                                     for name in label_columns))


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
