"""ECG data sets: a folder of records, a CSV manifest of them, and the store both are.

Each record is preprocessed once into :class:`~omnissl_ecg.preprocessing.Windows` (cached on disk,
:mod:`omnissl_ecg.cache`); a sample is one window of one record with its leads' identities, so
records with 1, 2, 3, 8 or 12 leads mix in one data set and one batch. Labels come from the
folder layout (``root/<class>/...``), a manifest column, or each window's measured heart rate;
groups (what a held-out split keeps on one side) are records, or subjects.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_ecg.cache import WindowCache
from omnissl_ecg.leads import OTHER
from omnissl_ecg.preprocessing import Preprocessing, Windows, preprocess
from omnissl_ecg.readers import LOOKED_FOR, find_records, read_record

LABELS = ("none", "folder", "heart_rate")


class ECGWindows:
    """Windows of several records, indexed flat.

    Args:
        recordings: the preprocessed windows of each record.
        sources: a name for each record (its path).
        labels: per record, one label per window (class names, or numbers), or None: unlabelled.
        groups: the group of each record (default: its source); see ``group_kind``.
        group_kind: what a group is (``"record"``, ``"subject"``).
        skipped: (source, reason) of each record that could not be used.
        files: the number of source files used.

    Attributes:
        labels: (len(self),) class indices (int; float with NaN where unlabelled) or floats
            (regression), or None.
        classes: class names (index = label); empty for numbers.
        task: ``"classification"`` or ``"regression"``.
        groups: (len(self),) each window's group.
    """

    sample_kind = "window"

    def __init__(self, recordings: Sequence[Windows], sources: Sequence[str],
                 labels: Sequence[Sequence[Any] | None] | None = None, groups: Sequence[str] | None = None,
                 group_kind: str = "record", skipped: Sequence[tuple[str, str]] = (), files: int = 0):
        self.recordings, self.sources, self.skipped, self.files = list(recordings), list(sources), list(skipped), files
        counts = np.array([len(w.data) for w in self.recordings], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        if self.offsets[-1] == 0:
            raise DataError("no window survived preprocessing (" + "; ".join(
                f"{s}: {w.report.get('rejected', 0)} rejected, {w.report.get('seconds', 0):.3g} s"
                for s, w in zip(self.sources, self.recordings)) + "); shorten data.window_seconds or raise data.reject")
        self.labels, self.classes, self.task = label_array(labels or [None] * len(self.recordings), counts)
        self.groups = np.repeat(np.asarray(list(groups) if groups is not None else self.sources, dtype=str), counts)
        self.group_kind = group_kind

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = int(np.searchsorted(self.offsets, index, side="right")) - 1
        w = self.recordings[r]
        return {"signal": np.array(w.data[index - self.offsets[r]], dtype=np.float32),  # [C, T] mV, off the mmap
                "leads": w.leads, "names": w.names, "sfreq": w.sfreq, "source": self.sources[r]}

    def summary(self) -> dict[str, int | float | str]:
        """Counts for the run's data summary, from the windows' reports (no file is read)."""
        reports = [w.report for w in self.recordings]
        out: dict[str, int | float | str] = {"files": self.files, "records": len(self.recordings), "windows": len(self)}
        lead_counts = sorted({len(w.leads) for w in self.recordings})
        out["leads per record"] = ", ".join(map(str, lead_counts))
        facts = {"windows rejected (peak-to-peak)": sum(int(r.get("rejected", 0)) for r in reports),
                 "windows dropped (non-finite)": sum(int(r.get("nonfinite", 0)) for r in reports),
                 "leads dropped (NaN or flat)": sum(len(r.get("bad_leads", {})) for r in reports),
                 "leads of unknown direction": sum(int((w.leads == OTHER).sum()) for w in self.recordings),
                 "records skipped": len(self.skipped)}
        out.update({k: v for k, v in facts.items() if v})
        return out


def label_array(per_record: Sequence[Sequence[Any] | None], counts: np.ndarray) -> tuple[np.ndarray | None, list[str], str]:
    """(labels, classes, task) from one sequence of window labels per record (None: unlabelled).

    Names are classes (sorted); numbers are a regression target, unless they are at most 10
    distinct whole numbers (0/1 codes): then classes. NaN or None: unlabelled.
    """
    values: list[Any] = []
    for part, count in zip(per_record, counts.tolist()):
        part = [None] * count if part is None else list(part)
        if len(part) != count:
            raise ValueError(f"{len(part)} labels for a record of {count} windows")
        values.extend(part)
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    if missing.all():
        return None, [], "classification"
    known = [v for v, m in zip(values, missing) if not m]
    out = np.full(len(values), np.nan)
    if any(isinstance(v, str) for v in known):
        classes = sorted({str(v) for v in known})
        out[~missing] = [classes.index(str(v)) for v in known]
        return (out if missing.any() else out.astype(np.int64)), classes, "classification"
    out[~missing] = np.asarray(known, dtype=np.float64)
    whole = bool(np.allclose(out[~missing], np.round(out[~missing]))) and len(set(known)) <= 10
    if whole and not missing.any():
        return out.astype(np.int64), [], "classification"
    return out, [], "classification" if whole else "regression"


def read_records(files: Sequence[Path], settings: Preprocessing, cache_dir: str | None,
                 strict: bool) -> tuple[list[Windows], list[Path], list[tuple[str, str]], int]:
    """Preprocess (or load from the cache) each file: its windows, the files used, the files skipped
    with the reason (a warning names each), and how many were preprocessed now."""
    cache = WindowCache(cache_dir, settings)
    recordings, used, skipped, built = [], [], [], 0
    for path in files:
        try:
            key = cache.key(path)
            windows = cache.load(key, str(path))
            if windows is None:
                windows = cache.store(key, preprocess(read_record(path), settings, str(path)), str(path))
                built += 1
        except DataError as exc:
            skip_or_raise(skipped, str(path), str(exc), strict, cause=exc)
            continue
        if not len(windows.data):
            reason = (f"no window: every window ({windows.report['windows']}) beyond data.reject "
                      f"({settings.reject} mV peak-to-peak)" if windows.report.get("windows")
                      else f"no window: the record ({windows.report.get('seconds', 0):.3g} s) is shorter than "
                           f"data.window_seconds ({settings.window_seconds} s)")
            skip_or_raise(skipped, str(path), reason, strict)
            continue
        recordings.append(windows)
        used.append(path)
    cache.save_index()
    return recordings, used, skipped, built


def settings_from(l_freq: float | None, h_freq: float | None, notch: float | None, sfreq: float,
                  window_seconds: float | None, stride_seconds: float | None, unknown_leads: str,
                  reject: float | None, labels: str) -> Preprocessing:
    return Preprocessing(l_freq, h_freq, notch, float(sfreq), window_seconds, stride_seconds, unknown_leads, reject,
                         heart_rate=labels == "heart_rate")


def heart_rate_labels(recordings: Sequence[Windows]) -> list[Sequence[Any]]:
    return [list(w.heart_rate) for w in recordings]


class ECGFolder(ECGWindows):
    """Every ECG record under ``root``: WFDB (``*.hea`` with its signal files), EDF/BDF, and numpy
    (``*.npz``, or ``*.npy`` with a ``<stem>.json`` naming the leads and rate).

    Records are preprocessed once and cached (:mod:`omnissl_ecg.cache`); with a warm cache no
    record is opened. A record that cannot be used (unreadable, damaged, no usable lead, no
    window) is skipped with a warning naming it and the reason, and counted; ``strict: true``
    makes it fatal. Nothing readable is a DataError.

    Args:
        root: the folder of records (searched recursively).
        labels: none; folder (root/<class>/..., the first folder under root); heart_rate (each window's, in bpm: regression).
        group_by: what a held-out split keeps together: record (each file), or folder (the record's parent folder: a subject, as PTB's patientNNN).
        l_freq: high-pass edge in Hz (baseline wander); null: none.
        h_freq: low-pass edge in Hz (skipped at or above a record's Nyquist rate); null: none.
        notch: mains frequency in Hz, harmonics too (60 in the Americas); null: none.
        sfreq: rate in Hz every record is resampled to (must equal modality.sfreq).
        window_seconds: window length; null keeps each record whole.
        stride_seconds: step between window starts; null: window_seconds (no overlap).
        unknown_leads: leads with no standard name (a wearable's ECG channel): drop (warned), error, or other (kept, direction unknown).
        reject: peak-to-peak limit in mV per lead and window; a window beyond it is dropped; null keeps all.
        cache_dir: window cache folder; null: $OMNISSL_CACHE/ecg or the platform cache.
        strict: stop at the first unusable record instead of skipping it with a warning.
    """

    def __init__(self, root: str, labels: str = "none", group_by: str = "record",
                 l_freq: Annotated[float | None, Range(gt=0)] = 0.5,
                 h_freq: Annotated[float | None, Range(gt=0)] = 100.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0, sfreq: Annotated[float, Range(gt=0)] = 500.0,
                 window_seconds: Annotated[float | None, Range(gt=0)] = 10.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None, unknown_leads: str = "drop",
                 reject: Annotated[float | None, Range(gt=0)] = 20.0, cache_dir: str | None = None,
                 strict: bool = False):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root {folder} is not a folder; point it at a folder of ECG records ({LOOKED_FOR})")
        if labels not in LABELS:
            raise DataError(f"data.labels must be one of {', '.join(LABELS)}, got {labels!r}")
        if group_by not in ("record", "folder"):
            raise DataError(f"data.group_by must be record or folder, got {group_by!r}")
        files = find_records(folder)
        if not files:
            raise DataError(f"no ECG record under {folder} (looked for {LOOKED_FOR})")
        settings = settings_from(l_freq, h_freq, notch, sfreq, window_seconds, stride_seconds, unknown_leads, reject,
                                 labels)
        recordings, used, skipped, built = read_records(files, settings, cache_dir, strict)
        if not recordings:
            raise DataError(f"no readable ECG record under {folder}: {len(skipped)} of {len(files)} files could not be "
                            f"used (first: {skipped[0][0]}: {skipped[0][1]})")
        print(f"ecg_folder: {len(recordings)} records under {folder}; {len(skipped)} skipped; {built} preprocessed, "
              f"{len(recordings) - built} from the cache", file=sys.stderr, flush=True)
        counts = [len(w.data) for w in recordings]
        if labels == "folder":
            names = [p.relative_to(folder).parts for p in used]
            values = [[parts[0]] * n if len(parts) > 1 else None for parts, n in zip(names, counts)]
        elif labels == "heart_rate":
            values = heart_rate_labels(recordings)
        else:
            values = None
        groups = [str(p.parent) for p in used] if group_by == "folder" else [str(p) for p in used]
        super().__init__(recordings, [str(p) for p in used], values, groups,
                         "subject" if group_by == "folder" else "record", skipped, files=len(used))


class ECGManifest(ECGWindows):
    """The records a CSV (or TSV) manifest lists, one per row, with a label and a group per row.

    Paths are relative to the manifest's folder, or absolute. A listed record that is missing or
    cannot be used is skipped with a warning naming it (fatal with ``strict``). Every window of a
    record takes its row's label; an empty cell (or ``n/a``) leaves it unlabelled; names are
    classes, numbers a regression target (at most 10 distinct whole numbers: classes).
    Preprocessing and caching as :class:`ECGFolder`.

    Args:
        manifest: the CSV file (.tsv: tab-separated).
        path_column: the column holding each record's path.
        label_column: the column holding each record's label; null: unlabelled.
        group_column: the column naming each record's group (patient, subject); null: each record its own group.

    Other options: as :class:`~omnissl_ecg.datasets.ECGFolder`.
    """

    def __init__(self, manifest: str, path_column: str = "path", label_column: str | None = "label",
                 group_column: str | None = None, l_freq: Annotated[float | None, Range(gt=0)] = 0.5,
                 h_freq: Annotated[float | None, Range(gt=0)] = 100.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0, sfreq: Annotated[float, Range(gt=0)] = 500.0,
                 window_seconds: Annotated[float | None, Range(gt=0)] = 10.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None, unknown_leads: str = "drop",
                 reject: Annotated[float | None, Range(gt=0)] = 20.0, cache_dir: str | None = None,
                 strict: bool = False):
        table = Path(manifest).expanduser()
        if not table.is_file():
            raise DataError(f"data.manifest {table} does not exist; point it at a CSV file with a {path_column!r} column")
        with open(table, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if table.suffix.lower() == ".tsv" else ",")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                    for row in reader]
            columns = [c.strip() for c in reader.fieldnames or []]
        for column, option in ((path_column, "path_column"), (label_column, "label_column"),
                               (group_column, "group_column")):
            if column is not None and column not in columns:
                raise DataError(f"{table} has no column {column!r} (data.{option}); its columns are {', '.join(columns)}")
        settings = settings_from(l_freq, h_freq, notch, sfreq, window_seconds, stride_seconds, unknown_leads, reject,
                                 "none")
        skipped: list[tuple[str, str]] = []
        files, by_file = [], {}
        for number, row in enumerate(rows, 2):
            path = Path(row[path_column]).expanduser()
            path = path if path.is_absolute() else table.parent / path
            if not path.is_file():
                skip_or_raise(skipped, str(path), f"listed on line {number} of {table} but not found", strict)
                continue
            files.append(path)
            by_file[path] = row
        recordings, used, failed, _ = read_records(files, settings, cache_dir, strict)
        skipped += failed
        if not recordings:
            raise DataError(f"no readable ECG record in {table}: {len(skipped)} of {len(rows)} rows could not be used"
                            + (f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
        cells = [by_file[p].get(label_column or "", "") for p in used]
        values = [None if c.lower() in ("", "n/a", "na", "nan") else c for c in cells]
        if label_column is not None and values and all(v is None or _is_number(v) for v in values):
            values = [None if v is None else float(v) for v in values]
        labels = [None if v is None else [v] * len(w.data) for v, w in zip(values, recordings)]
        groups = [by_file[p][group_column] or str(p) for p in used] if group_column else [str(p) for p in used]
        super().__init__(recordings, [str(p) for p in used], labels if label_column else None, groups,
                         "subject" if group_column else "record", skipped, files=len(used))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

