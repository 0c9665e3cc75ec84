"""EEG/MEG data sets: a folder (or BIDS tree) of recordings, and in-memory MNE objects or arrays.

Each recording is preprocessed once into :class:`~omnissl_eeg.preprocessing.Windows`;
a sample is one window of one recording, with its channels' positions and types, so
recordings with different montages and sensor types mix freely.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import torch

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_eeg.cache import WindowCache, default_cache_dir
from omnissl_eeg.preprocessing import DEFAULT_REJECT, Preprocessing, Windows, no_window_reason, preprocess
from omnissl_eeg.readers import find_bids_recordings, find_recordings, is_bids, read_recording
from omnissl_eeg.sensors import SENSOR_TYPES


class WindowDataset:
    """Windows of several recordings, indexed flat.

    Attributes:
        recordings: the preprocessed windows of each recording.
        sources: a name for each recording (file path or object name).
        labels: (len(self),) labels when every recording has them, else None.
        num_channels: (len(recordings),) channel count of each recording.
        window_length: samples per window when every recording's windows have the same
            length, else None.
        skipped: (source, reason) of each recording that could not be used.
    """

    task = "classification"

    def __init__(self, recordings: Sequence[Windows], sources: Sequence[str],
                 skipped: Sequence[tuple[str, str]] = ()):
        self.recordings = list(recordings)
        self.sources = list(sources)
        self.skipped = list(skipped)
        counts = np.array([len(w.data) for w in self.recordings], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        if self.offsets[-1] == 0:
            raise DataError("no window survived preprocessing (" + "; ".join(
                f"{s}: {w.report.get('rejected', 0)} rejected" for s, w in zip(self.sources, self.recordings))
                + "); lower data.window_seconds or raise/disable data.reject")
        self.num_channels = np.array([w.data.shape[1] for w in self.recordings], dtype=np.int64)
        lengths = {w.data.shape[2] for w in self.recordings}
        self.window_length = lengths.pop() if len(lengths) == 1 else None  # samples per window, if all agree
        self._view_cache: list[np.ndarray] | None = None
        self._tensor_cache: list[torch.Tensor] | None = None
        has_labels = all(w.labels is not None for w in self.recordings)
        self.labels = np.concatenate([w.labels for w in self.recordings]) if has_labels else None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = int(np.searchsorted(self.offsets, index, side="right")) - 1
        w = self.recordings[r]
        return {
            "signal": np.array(w.data[index - self.offsets[r]], dtype=np.float32),  # [C, T], copied off the mmap
            "positions": w.positions,  # [C, 3] metres
            "types": w.types,  # [C] index into SENSOR_TYPES
            "channels": w.channels,
            "sfreq": w.sfreq,
            "source": self.sources[r],
        }

    def get_batch(self, indices: Sequence[int], samples: int | None = None) -> dict[str, np.ndarray] | None:
        """Several windows at once, stacked, for :meth:`EEGModality.tokenize_batch`.

        Returns ``signal`` (B, C_max, T) float32 in field units, where a recording with fewer
        channels than the widest in the batch is zero-padded after its last channel, and
        ``recording`` (B,): the index in :attr:`recordings` of each window's recording (its
        channels, positions, types, rate). Each window is copied once, straight from the
        memory map into the batch; sorted indices read each file front to back. ``samples``
        keeps only each window's first samples (a whole number of patches). None when the
        windows differ in length (``window_seconds: null``).
        """
        index = np.asarray(indices, dtype=np.int64)
        rec = np.searchsorted(self.offsets, index, side="right") - 1
        if self.window_length is None and len({self.recordings[r].data.shape[2] for r in set(rec.tolist())}) > 1:
            return None
        counts = self.num_channels[rec]
        width, full = int(counts.max()), self.recordings[int(rec[0])].data.shape[2]
        length = full if samples is None else min(int(samples), full)
        local = index - self.offsets[rec]
        if int(counts.min()) < width:  # mixed montages: zero channels after each recording's own
            signal = np.zeros((len(index), width, length), dtype=np.float32)
            views = self._views()
            for b, (r, i, c) in enumerate(zip(rec.tolist(), local.tolist(), counts.tolist())):
                signal[b, :c] = views[r][i][:, :length]
            return {"signal": signal, "recording": rec}
        # One index_select per recording (sorted indices: one run each). It runs on torch's
        # intra-op threads; the copy is bound by a core's memory bandwidth, so two threads
        # deliver ~1.4x numpy's one-thread loop (BENCHMARKS.md). DataLoader workers run torch
        # on one thread, where it is as fast as numpy.
        signal = np.empty((len(index), width, length), dtype=np.float32)
        out, tensors = torch.from_numpy(signal), self._tensors()
        runs = (np.flatnonzero(np.diff(rec)) + 1).tolist()
        for start, stop in zip([0, *runs], [*runs, len(index)]):
            source = tensors[int(rec[start])]
            if length < full:  # a view (torch's slicing costs microseconds: only when needed)
                source = source[:, :, :length]
            torch.index_select(source, 0, torch.from_numpy(local[start:stop]), out=out[start:stop])
        return {"signal": signal, "recording": rec}

    def _views(self) -> list[np.ndarray]:
        """Plain ndarray views of the recordings' memory maps, made once: indexing an
        np.memmap costs a subclass round trip per window. Not pickled (see __getstate__)."""
        if self._view_cache is None:
            self._view_cache = [w.data.view(np.ndarray) for w in self.recordings]
        return self._view_cache

    def _tensors(self) -> list[torch.Tensor]:
        """The same views as tensors (read-only memory maps: torch warns, but only reads them)."""
        if self._tensor_cache is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                self._tensor_cache = [torch.from_numpy(view) for view in self._views()]
        return self._tensor_cache

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_view_cache"] = state["_tensor_cache"] = None  # views of memory maps would pickle as copies
        return state

    def summary(self) -> str:
        """One line per recording: windows, channels by type, dropped channels, rejected windows."""
        lines = []
        for source, w in zip(self.sources, self.recordings):
            by_type = {SENSOR_TYPES[t]: int((w.types == t).sum()) for t in np.unique(w.types)}
            lines.append(f"{source}: {len(w.data)} windows, {by_type}, {w.sfreq:g} Hz, "
                         f"dropped channels {w.report.get('bad_channels', {})}, rejected {w.report.get('rejected', 0)}")
        return "\n".join(lines)


def settings_from(pick: Sequence[str], l_freq: float | None, h_freq: float | None, notch: float | None,
                  sfreq: float, reference: str | None, window_seconds: float | None,
                  stride_seconds: float | None, reject: dict[str, float] | None,
                  unknown_channels: str) -> Preprocessing:
    return Preprocessing(tuple(pick), l_freq, h_freq, notch, float(sfreq), reference, window_seconds,
                         stride_seconds, None if reject is None else dict(reject), unknown_channels)


class EEGFolder(WindowDataset):
    """Every EDF, BDF, FIF, BrainVision (.vhdr) and EEGLAB (.set) recording under ``root``.

    A folder holding ``dataset_description.json`` is read as a BIDS tree: only
    ``*/eeg/*_eeg.*`` and ``*/meg/*_meg.*`` files, with their ``channels.tsv`` and
    ``electrodes.tsv`` applied by MNE-BIDS. Windows are cached (see :mod:`omnissl_eeg.cache`);
    with a warm cache no recording is opened. A recording that cannot be used is skipped with a
    warning naming it and the reason, and counted in ``skipped``; ``strict: true`` makes it
    fatal: a file MNE cannot open, one damaged or truncated (an EDF with fewer data records
    than its header declares, a FIF cut short), one whose every channel is flat or NaN (with a
    unit diagnosis when the values are ~1e6 too small), and one that yields no window (every
    window rejected by ``reject``, with the limit and the typical peak-to-peak found, or the
    recording shorter than one window).

    Args:
        root: the folder.
        bids: read as BIDS (default: when ``dataset_description.json`` is present).
        pick, l_freq, h_freq, notch, sfreq, reference, window_seconds, stride_seconds, reject,
            unknown_channels: preprocessing, see :class:`~omnissl_eeg.preprocessing.Preprocessing`.
        cache_dir: window cache folder (default ``$OMNISSL_CACHE/eeg`` or ``~/.cache/omnissl/eeg``).
        strict: stop at the first unusable recording instead of skipping it.
    """

    def __init__(self, root: str, bids: bool | None = None, pick: list[str] = list(SENSOR_TYPES),
                 l_freq: Annotated[float | None, Range(gt=0)] = 0.1,
                 h_freq: Annotated[float | None, Range(gt=0)] = 75.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0,
                 sfreq: Annotated[float, Range(gt=0)] = 200.0, reference: str | None = "average",
                 window_seconds: Annotated[float | None, Range(gt=0)] = 4.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None,
                 reject: Annotated[dict[str, float] | None, Range(gt=0)] = DEFAULT_REJECT,
                 unknown_channels: str = "drop", cache_dir: str | None = None, strict: bool = False):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root {folder} is not a folder; point it at a folder of EDF/BDF/FIF/"
                            f"BrainVision/EEGLAB recordings or a BIDS root")
        settings = settings_from(pick, l_freq, h_freq, notch, sfreq, reference, window_seconds, stride_seconds,
                                 reject, unknown_channels)
        bids = is_bids(folder) if bids is None else bids
        files = find_bids_recordings(folder) if bids else find_recordings(folder)
        if not files:
            raise DataError(f"no recording under {folder} (looked for {'BIDS eeg/meg files' if bids else ''} "
                            f"*.edf, *.bdf, *.fif, *.vhdr, *.set)")
        cache = WindowCache(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), settings)
        recordings, sources, skipped = [], [], []
        for path in files:
            try:
                windows = self._load(path, cache, settings, folder if bids else None)
            except DataError as exc:
                skip_or_raise(skipped, str(path), str(exc), strict, cause=exc)
                continue
            if not len(windows.data):  # every window rejected, or too short: named, never silently gone
                skip_or_raise(skipped, str(path), no_window_reason(windows, settings), strict)
                continue
            recordings.append(windows)
            sources.append(str(path))
        if not recordings:
            raise DataError(f"no readable recording under {folder}: {len(skipped)} of {len(files)} files could not "
                            f"be used (first: {skipped[0][1] if skipped else 'all windows rejected'})")
        cache.save_index()
        if skipped:
            warnings.warn(f"skipped {len(skipped)} of {len(files)} recordings under {folder}")
        super().__init__(recordings, sources, skipped)

    @staticmethod
    def _load(path: Path, cache: WindowCache, settings: Preprocessing, bids_root: Path | None) -> Windows:
        key = cache.key(path, bids=bids_root is not None)
        windows = cache.load(key, where=str(path))
        if windows is None:
            windows = cache.store(key, preprocess(read_recording(path, bids_root), settings, str(path)))
        return windows


class EEGRecordings(WindowDataset):
    """In-memory recordings: ``mne.io.Raw``, ``mne.Epochs``, or numpy arrays with channel names and rate.

    Not cached (the data are already in memory). Epochs' event codes become labels.

    Args:
        items: Raw or Epochs objects (copied, never modified), or ``(array, ch_names, sfreq)`` /
            ``(array, ch_names, sfreq, ch_types)`` tuples with arrays (C, T) continuous or (E, C, T)
            epochs in volts (EEG) or tesla (MEG), MNE's units.
        names: a name per item for messages (default ``item0``, ``item1``, ...).
        labels: for array items given as (E, C, T), a label per epoch (one array per item), or None.
        **preprocessing: keyword arguments of :class:`~omnissl_eeg.preprocessing.Preprocessing`.
    """

    def __init__(self, items: Sequence[Any], names: Sequence[str] | None = None,
                 labels: Sequence[np.ndarray | None] | None = None, **preprocessing: Any):
        import mne

        settings = Preprocessing(**{k: tuple(v) if k == "pick" else v for k, v in preprocessing.items()})
        names = list(names) if names is not None else [f"item{i}" for i in range(len(items))]
        recordings = []
        for i, (item, name) in enumerate(zip(items, names)):
            item_labels = labels[i] if labels is not None else None
            if isinstance(item, (mne.io.BaseRaw, mne.BaseEpochs)):
                inst = item.copy()
                if isinstance(item, mne.BaseEpochs) and item_labels is None:
                    item_labels = item.events[:, 2]
            else:
                inst = from_array(*item)
            recordings.append(preprocess(inst, settings, name, item_labels))
        super().__init__(recordings, names)


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
