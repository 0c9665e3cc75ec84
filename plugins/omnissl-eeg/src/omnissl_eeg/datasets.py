"""EEG/MEG data sets: a folder (or BIDS tree) of recordings and epochs files, a CSV manifest of
them, and in-memory MNE objects or arrays.

Each recording is preprocessed once into :class:`~omnissl_eeg.preprocessing.Windows` (cached
on disk for files); the data sets are :class:`~omnissl_eeg.windows.WindowDataset` stores of
them, with labels and groups from the source the recipe names (:mod:`omnissl_eeg.labels`).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np

from omnissl import skip_or_raise
from omnissl.cache import cache_folder
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_eeg.cache import WindowCache
from omnissl_eeg.labels import (check_label_source, column_values, event_labels, folder_label, participants_labels,
                                per_window, read_table, recording_groups, require_column, warn_unmatched)
from omnissl_eeg.preprocessing import DEFAULT_REJECT, Preprocessing, Windows, no_window_reason, preprocess
from omnissl_eeg.readers import find_files, is_bids, is_bids_recording, read_recording
from omnissl_eeg.sensors import SENSOR_TYPES
from omnissl_eeg.windows import WindowDataset

__all__ = ["EEGFolder", "EEGManifest", "EEGRecordings", "WindowDataset", "from_array", "settings_from"]
LOOKED_FOR = "*.edf, *.bdf, *.fif, *.vhdr, *.set, and MNE epochs files (*-epo.fif)"


def settings_from(pick: Sequence[str], l_freq: float | None, h_freq: float | None, notch: float | None,
                  sfreq: float, reference: str | None, window_seconds: float | None,
                  stride_seconds: float | None, reject: dict[str, float] | None,
                  unknown_channels: str, reject_by_annotation: bool = True, tmin: float | None = None,
                  tmax: float | None = None) -> Preprocessing:
    return Preprocessing(tuple(pick), l_freq, h_freq, notch, float(sfreq), reference, window_seconds,
                         stride_seconds, None if reject is None else dict(reject), unknown_channels,
                         reject_by_annotation=reject_by_annotation, tmin=tmin, tmax=tmax)


def read_files(files: Sequence[Path], settings: Preprocessing, cache_dir: str | None, strict: bool,
               bids_root: Path | None) -> tuple[list[Windows], list[Path], list[tuple[str, str]], int]:
    """Preprocess (or load from the cache) each file: its windows, the files used, the files
    skipped with the reason, and how many were preprocessed now (the rest came from the cache).

    An epochs file gives one sample per epoch (``window_seconds`` is for continuous recordings).
    """
    import mne

    cache = WindowCache(cache_folder("eeg", cache_dir), settings)
    recordings, used, skipped, built = [], [], [], 0
    for path in files:
        try:
            key = cache.key(path, bids=bids_root is not None)
            windows = cache.load(key, where=str(path))
            if windows is None:
                inst = read_recording(path, bids_root)
                own = settings
                if isinstance(inst, mne.BaseEpochs):  # the key stays the folder's: the file decides its kind
                    own = dataclasses.replace(settings, window_seconds=None, stride_seconds=None)
                windows = cache.store(key, preprocess(inst, own, str(path)))
                built += 1
        except DataError as exc:
            skip_or_raise(skipped, str(path), str(exc), strict, cause=exc)
            continue
        if not len(windows.data):  # every window rejected, or too short: named, never silently gone
            skip_or_raise(skipped, str(path), no_window_reason(windows, settings), strict)
            continue
        recordings.append(windows)
        used.append(path)
    cache.save_index()
    return recordings, used, skipped, built


def report_found(name: str, where: Path, recordings: Sequence[Windows], others: Sequence[tuple[Path, str]],
                 skipped: int, built: int, cache_dir: str | None) -> None:
    """One line on stderr for the whole folder (MNE's per-file lines are silenced): what was
    found, what is not read, what was preprocessed now and what came from the cache."""
    epochs = sum(w.report.get("kind") == "epochs" for w in recordings)
    text = (f"{name}: found {len(recordings) - epochs} raw recording{'s' if len(recordings) - epochs != 1 else ''} "
            f"and {epochs} epochs file{'s' if epochs != 1 else ''} under {where}")
    if others:
        text += (f"; not read, {len(others)} file{'s' if len(others) != 1 else ''} of other kinds: "
                 + ", ".join(f"{p.name} ({kind})" for p, kind in others[:5]) + (" ..." if len(others) > 5 else ""))
    if skipped:
        text += f"; skipped {skipped} unusable (see the warnings)"
    cache = cache_folder("eeg", cache_dir)
    text += f"; {built} preprocessed, {len(recordings) - built} from the cache in {cache}"
    print(text, file=sys.stderr, flush=True)


class EEGFolder(WindowDataset):
    """Every EDF, BDF, FIF, BrainVision (.vhdr) and EEGLAB (.set) recording, and every MNE epochs
    file, under ``root``.

    A continuous recording gives windows; an epochs file (``*-epo.fif``, or any FIF holding
    epochs) one sample per epoch, cropped to ``tmin``/``tmax``. FIF files of other kinds
    (``-ave``, ``-cov``, ``-fwd``, ...) are named in the found line and in ``skipped``, never
    read. A folder holding ``dataset_description.json`` is read as a BIDS tree: only
    ``*/eeg/*_eeg.*`` and ``*/meg/*_meg.*`` files, with their ``channels.tsv``,
    ``electrodes.tsv`` and ``events.tsv`` applied by MNE-BIDS. Windows are cached (see
    :mod:`omnissl_eeg.cache`); with a warm cache no recording is opened. A recording that
    cannot be used is skipped with a warning naming it and the reason, and counted in
    ``skipped``; ``strict: true`` makes it fatal: a file MNE cannot open, one damaged or
    truncated (an EDF with fewer data records than its header declares, a FIF cut short), one
    whose every channel is flat or NaN (with a unit diagnosis when the values are ~1e6 too
    small), and one that yields no window (every window rejected by ``reject`` or inside BAD_
    annotations, with the limit and the typical peak-to-peak found, or the recording shorter
    than one window). Labels and groups: see :mod:`omnissl_eeg.labels`.

    Args:
        root: the folder of recordings (searched recursively) or a BIDS root.
        bids: read as BIDS; null: when root holds dataset_description.json.
        labels: auto (epochs by event; with event_id, annotations too), events, folder, participants:<column>, none.
        event_id: event name -> class name, for epochs and annotation labels; others unlabelled; null: names as classes.
        group_by: what a held-out split keeps together: recording, subject (BIDS sub-<label>), or auto.
        pick: sensor types to keep (eeg, mag, grad); default all three.
        l_freq: high-pass edge in Hz; null: no high-pass.
        h_freq: low-pass edge in Hz (skipped above a recording's Nyquist rate); null: none.
        notch: line frequency in Hz, harmonics below Nyquist too (60 in the Americas); null: none.
        sfreq: rate in Hz every recording is resampled to (must equal modality.sfreq).
        reference: average (common average of the EEG channels) or null to keep the recorded one.
        window_seconds: window length of continuous recordings; null keeps each recording whole.
        stride_seconds: step between window starts; null: window_seconds (no overlap).
        reject: peak-to-peak limit per sensor type (uV, fT, fT/cm); a window above it is dropped; null keeps all.
        unknown_channels: channels without a position: drop (warned), error, or index (a learned identity).
        reject_by_annotation: drop windows overlapping BAD_/EDGE annotations (as MNE); false keeps them.
        tmin: epochs files: start of each sample in seconds from its event; null: the epochs' own start.
        tmax: epochs files: end (excluded) in seconds from the event; null: the epochs' own end.
        cache_dir: window cache folder; null: $OMNISSL_CACHE/eeg, else omnissl/eeg in the user's cache
            folder (~/.cache on Linux).
        strict: stop at the first unusable file instead of skipping it with a warning.
    """

    def __init__(self, root: str, bids: bool | None = None, labels: str = "auto",
                 event_id: dict[str, str] | None = None, group_by: str = "auto", pick: list[str] = list(SENSOR_TYPES),
                 l_freq: Annotated[float | None, Range(gt=0)] = 0.1,
                 h_freq: Annotated[float | None, Range(gt=0)] = 75.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0,
                 sfreq: Annotated[float, Range(gt=0)] = 200.0, reference: str | None = "average",
                 window_seconds: Annotated[float | None, Range(gt=0)] = 4.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None,
                 reject: Annotated[dict[str, float] | None, Range(gt=0)] = DEFAULT_REJECT,
                 unknown_channels: str = "drop", reject_by_annotation: bool = True,
                 tmin: Annotated[float | None, Range()] = None, tmax: Annotated[float | None, Range()] = None,
                 cache_dir: str | None = None, strict: bool = False):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root {folder} is not a folder; point it at a folder of EDF/BDF/FIF/"
                            f"BrainVision/EEGLAB recordings or MNE epochs files, or a BIDS root")
        column = check_label_source(labels)
        settings = settings_from(pick, l_freq, h_freq, notch, sfreq, reference, window_seconds, stride_seconds,
                                 reject, unknown_channels, reject_by_annotation, tmin, tmax)
        bids = is_bids(folder) if bids is None else bids
        files, others = find_files(folder)
        if bids:
            files = [path for path in files if is_bids_recording(path)]
        if not files:
            found = ("; found only files of other kinds: " + ", ".join(f"{p.name} ({kind})" for p, kind in others[:5])
                     if others else "")
            raise DataError(f"no recording under {folder} (looked for {'BIDS eeg/meg files: ' if bids else ''}"
                            f"{LOOKED_FOR}){found}")
        recordings, used, skipped, built = read_files(files, settings, cache_dir, strict, folder if bids else None)
        if not recordings:
            raise DataError(f"no readable recording under {folder}: {len(skipped)} of {len(files)} files could not "
                            f"be used (first: {skipped[0][1] if skipped else 'all windows rejected'})")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} of {len(files)} recordings under {folder}")
        report_found("eeg_folder", folder, recordings, others, len(skipped), built, cache_dir)
        skipped += [(str(path), f"not a recording: {kind}") for path, kind in others]
        counts = [len(w.data) for w in recordings]
        if labels == "folder":
            values = [per_window(folder_label(p, folder), n) for p, n in zip(used, counts)]
        elif column is not None:
            values = [per_window(v, n) for v, n in zip(participants_labels(folder, column, used), counts)]
        elif labels == "none":
            values = [None] * len(recordings)
        else:  # events: epochs and annotations; auto: epochs, and annotations when event_id names some
            by_events = labels == "events" or event_id is not None
            values = [event_labels(w, event_id) if by_events or w.report.get("kind") == "epochs" else None
                      for w in recordings]
            if by_events:
                warn_unmatched(values, recordings, event_id, str(folder))
        groups, group_kind = recording_groups(used, folder, group_by)
        super().__init__(recordings, [str(p) for p in used], skipped, values, groups, group_kind, files=len(used))


class EEGManifest(WindowDataset):
    """The recordings and epochs files a CSV (or TSV) manifest lists, one per row, with a label and a
    group per row from the columns the recipe names.

    Paths are relative to the manifest's folder, or absolute. A listed file that is missing or
    cannot be used is skipped with a warning naming it (fatal with ``strict``). Every window of a
    recording takes its row's label; an empty cell (or ``n/a``) leaves it unlabelled. Labels are
    class names, or numbers as in :func:`omnissl_eeg.labels.column_values`. Preprocessing and
    caching as :class:`EEGFolder`.

    Args:
        manifest: the CSV file (.tsv: tab-separated).
        path_column: the column holding each recording's path.
        label_column: the column holding each recording's label; null, or a manifest without a label column: unlabelled.
        group_column: the column naming each recording's group (subject, site); null: each recording its own group.

    Other options: as :class:`~omnissl_eeg.datasets.EEGFolder`.
    """

    def __init__(self, manifest: str, path_column: str = "path", label_column: str | None = "label",
                 group_column: str | None = None, pick: list[str] = list(SENSOR_TYPES),
                 l_freq: Annotated[float | None, Range(gt=0)] = 0.1,
                 h_freq: Annotated[float | None, Range(gt=0)] = 75.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0,
                 sfreq: Annotated[float, Range(gt=0)] = 200.0, reference: str | None = "average",
                 window_seconds: Annotated[float | None, Range(gt=0)] = 4.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None,
                 reject: Annotated[dict[str, float] | None, Range(gt=0)] = DEFAULT_REJECT,
                 unknown_channels: str = "drop", reject_by_annotation: bool = True,
                 tmin: Annotated[float | None, Range()] = None, tmax: Annotated[float | None, Range()] = None,
                 cache_dir: str | None = None, strict: bool = False):
        table = Path(manifest).expanduser()
        if not table.is_file():
            raise DataError(f"data.manifest {table} does not exist; point it at a CSV file with a {path_column!r} "
                            f"column")
        columns, rows = read_table(table, "data.manifest")
        require_column(path_column, columns, table, "data.path_column")
        if label_column is not None and (label_column != "label" or "label" in columns):
            require_column(label_column, columns, table, "data.label_column")
        else:
            label_column = None
        if group_column is not None:
            require_column(group_column, columns, table, "data.group_column")
        settings = settings_from(pick, l_freq, h_freq, notch, sfreq, reference, window_seconds, stride_seconds,
                                 reject, unknown_channels, reject_by_annotation, tmin, tmax)
        files, skipped, listed = [], [], []
        for line, row in enumerate(rows, start=2):
            cell = row.get(path_column, "")
            path = Path(cell).expanduser()
            path = path if path.is_absolute() else table.parent / path
            if not cell or not path.is_file():
                skip_or_raise(skipped, f"{table}, line {line}", f"{path_column} {cell!r} is not a file"
                              f"{f' ({path})' if cell else ''}", strict)
                continue
            files.append(path)
            listed.append(row)
        if not files:
            raise DataError(f"{table} lists no existing recording ({len(rows)} rows, column {path_column!r})")
        recordings, used, bad, built = read_files(files, settings, cache_dir, strict, None)
        skipped += bad
        if not recordings:
            raise DataError(f"no readable recording in {table}: {len(skipped)} of {len(rows)} rows could not be used "
                            f"(first: {skipped[0][1] if skipped else 'all windows rejected'})")
        report_found("eeg_manifest", table, recordings, [], len(skipped), built, cache_dir)
        row_of = {path: row for path, row in zip(files, listed)}
        counts = [len(w.data) for w in recordings]
        values: list[Any] = [None] * len(used)
        if label_column is not None:
            cells = column_values([row_of[p].get(label_column) for p in used])
            values = [per_window(v, n) for v, n in zip(cells, counts)]
        groups = [str(p) for p in used]
        if group_column is not None:
            groups = [row_of[p].get(group_column) or str(p) for p in used]
        super().__init__(recordings, groups=groups, sources=[str(p) for p in used], skipped=skipped, labels=values,
                         group_kind=group_column or "recording", files=len(used))


class EEGRecordings(WindowDataset):
    """In-memory recordings: ``mne.io.Raw``, ``mne.Epochs``, or numpy arrays with channel names and rate.

    Not cached (the data are already in memory). Epochs are labelled by their events' names
    (``classes``) unless ``labels`` gives their labels; each item is its own group.

    Args:
        items: Raw or Epochs objects (copied, never modified), or ``(array, ch_names, sfreq)`` /
            ``(array, ch_names, sfreq, ch_types)`` tuples with arrays (C, T) continuous or (E, C, T)
            epochs in volts (EEG) or tesla (MEG), MNE's units.
        names: a name per item for messages (default ``item0``, ``item1``, ...).
        labels: for epochs items, a label per epoch (one array per item, class names or numbers), or None.
        **preprocessing: keyword arguments of :class:`~omnissl_eeg.preprocessing.Preprocessing`.
    """

    epochs_source = "epochs objects"

    def __init__(self, items: Sequence[Any], names: Sequence[str] | None = None,
                 labels: Sequence[np.ndarray | None] | None = None, **preprocessing: Any):
        import mne

        settings = Preprocessing(**{k: tuple(v) if k == "pick" else v for k, v in preprocessing.items()})
        names = list(names) if names is not None else [f"item{i}" for i in range(len(items))]
        recordings, values = [], []
        for i, (item, name) in enumerate(zip(items, names)):
            item_labels = labels[i] if labels is not None else None
            inst = item.copy() if isinstance(item, (mne.io.BaseRaw, mne.BaseEpochs)) else from_array(*item)
            windows = preprocess(inst, settings, name, item_labels)
            recordings.append(windows)
            if windows.labels is not None:
                values.append(windows.labels)
            else:
                values.append(event_labels(windows, None) if isinstance(item, mne.BaseEpochs) else None)
        super().__init__(recordings, names, labels=values)


def from_array(array: np.ndarray, ch_names: Sequence[str], sfreq: float,
               ch_types: str | Sequence[str] = "eeg") -> Any:
    """An MNE ``RawArray`` (array (C, T)) or ``EpochsArray`` (array (E, C, T)) in MNE's SI units."""
    import mne

    array = np.asarray(array, dtype=np.float64)
    if array.ndim not in (2, 3) or array.shape[-2] != len(ch_names):
        raise DataError(f"array of shape {array.shape} does not match {len(ch_names)} channel names; "
                        f"expected (channels, samples) or (epochs, channels, samples)")
    info = mne.create_info(list(ch_names), float(sfreq), ch_types)
    return (mne.io.RawArray(array, info, verbose="error") if array.ndim == 2
            else mne.EpochsArray(array, info, verbose="error"))
