"""Where the labels and groups of recordings come from: events, folders, BIDS tables, manifests.

``data.labels`` picks one source for ``eeg_folder`` (``eeg_manifest`` takes its own columns):

* ``auto``: the samples of an epochs file are labelled by their events; continuous
  recordings are unlabelled, unless ``event_id`` is given: then as ``events``.
* ``events``: epochs by their event; each window of a continuous recording by the event it
  falls in (:func:`omnissl_eeg.preprocessing.window_events`): the recording's annotations, or in
  a BIDS tree its ``events.tsv``, which MNE-BIDS reads as annotations.
* ``folder``: ``root/<label>/.../recording``: the first folder under the root names the
  class of every window of the recording.
* ``participants:<column>``: a column of the BIDS ``participants.tsv``, by the recording's
  subject (``sub-<label>`` in its path).
* ``none``: no labels.

Event names pass through ``data.event_id`` (name -> class) when it is given. A column of a
table (``participants.tsv``, a manifest) holds class names, or numbers: at most 10 distinct whole
numbers are classes (0/1 codes), any other numbers a regression target.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omnissl.errors import DataError
from omnissl_eeg.preprocessing import Windows
from omnissl_eeg.readers import subject_of

LABEL_SOURCES = ("auto", "events", "folder", "participants:<column>", "none")
_MISSING = ("", "n/a", "na", "nan")  # BIDS writes n/a for an unknown value


def check_label_source(labels: str) -> str | None:
    """The ``participants.tsv`` column when ``labels`` is ``participants:<column>``, else None;
    a :class:`DataError` for an unknown source."""
    if labels.startswith("participants:") and labels.split(":", 1)[1].strip():
        return labels.split(":", 1)[1].strip()
    if labels not in ("auto", "events", "folder", "none"):
        raise DataError(f"data.labels must be one of {', '.join(LABEL_SOURCES)}, got {labels!r}")
    return None


def event_labels(windows: Windows, event_id: dict[str, Any] | None) -> list[str | None] | None:
    """Each window's class from its events: the first (most specific) event that ``event_id``
    names, mapped to its class, or with no ``event_id`` the first event's name; None for a
    window in no such event. None when the recording has no events."""
    if windows.events is None:
        return None
    if event_id is None:
        return [names[0] if names else None for names in windows.events]
    return [next((str(event_id[n]) for n in names if n in event_id), None) for names in windows.events]


def event_names(recordings: Sequence[Windows]) -> list[str]:
    """Every event name the recordings' windows fall in, sorted (for messages)."""
    return sorted({n for w in recordings for names in (w.events or []) for n in names})


def folder_label(path: Path, root: Path) -> str | None:
    """The first folder under ``root`` on the way to ``path``, or None for a file directly in it."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def read_table(path: Path, where: str) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of a CSV file (a ``.tsv`` is tab-separated)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{where} {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)} for row in rows]
    return columns, rows


def require_column(column: str, columns: list[str], path: Path, option: str) -> None:
    if column not in columns:
        raise DataError(f"{path} has no column {column!r} ({option}); its columns are {', '.join(columns)}")


def column_values(cells: Sequence[str | None]) -> list[str | float | None]:
    """A table column's cells as labels: names stay names; numbers are class names when there are
    at most 10 distinct whole numbers (``0``/``1`` codes), else floats (a regression target)."""
    cells = [None if c is None or c.strip().lower() in _MISSING else c.strip() for c in cells]
    present = [c for c in cells if c is not None]
    try:
        numbers = [float(c) for c in present]
    except ValueError:
        return list(cells)
    if all(float(n).is_integer() for n in numbers) and len(set(numbers)) <= 10:
        return [None if c is None else str(int(float(c))) for c in cells]
    return [None if c is None else float(c) for c in cells]


def participants_labels(root: Path, column: str, files: Sequence[Path]) -> list[str | float | None]:
    """The ``participants.tsv`` value of each file's subject (None when unknown or ``n/a``)."""
    table = root / "participants.tsv"
    if not table.is_file():
        raise DataError(f"data.labels: participants:{column} reads {table}, which does not exist (a BIDS root "
                        f"has one, with a participant_id column)")
    columns, rows = read_table(table, "data.labels")
    require_column("participant_id", columns, table, "the BIDS subject column")
    require_column(column, columns, table, f"data.labels: participants:{column}")
    by_subject = dict(zip([row.get("participant_id", "") for row in rows],
                          column_values([row.get(column) for row in rows])))
    return [by_subject.get(subject_of(path.relative_to(root)) or "") for path in files]


def recording_groups(files: Sequence[Path], root: Path, group_by: str) -> tuple[list[str], str]:
    """Each recording's group and what a group is: ``recording`` (the file), ``subject`` (BIDS
    ``sub-<label>`` in its path), or ``auto``: subjects when every file has one, else recordings."""
    if group_by not in ("auto", "recording", "subject"):
        raise DataError(f"data.group_by must be auto, recording or subject, got {group_by!r}")
    subjects = [subject_of(path.relative_to(root)) for path in files]
    if group_by == "subject" and None in subjects:
        missing = files[subjects.index(None)]
        raise DataError(f"data.group_by: subject, but {missing} names no subject (BIDS sub-<label> in its folder "
                        f"or file name); set data.group_by: recording, or use eeg_manifest with a group_column")
    if group_by == "subject" or (group_by == "auto" and files and None not in subjects):
        return [str(s) for s in subjects], "subject"
    return [str(path) for path in files], "recording"


def warn_unmatched(labels: Sequence[Sequence[Any] | None], recordings: Sequence[Windows],
                   event_id: dict[str, Any] | None, where: str) -> None:
    """A warning when events (``data.labels: events``, or ``data.event_id``) label no window,
    naming the events there are."""
    if any(v is not None for part in labels if part is not None for v in part):
        return
    names = event_names(recordings)
    found = ", ".join(names[:20]) if names else "none"
    asked = f" named in data.event_id ({', '.join(event_id)})" if event_id else ""
    warnings.warn(f"{where}: labels from events, but no window falls in an event{asked}; the recordings' events: "
                  f"{found}")


def per_window(value: Any, count: int) -> list[Any] | None:
    """One recording's label repeated for its ``count`` windows (None stays None)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else [value] * count
