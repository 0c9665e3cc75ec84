"""Windows of several recordings indexed flat: the store every EEG/MEG data set of this plugin is.

A sample is one window (or one whole epoch) of one recording, with its channels' positions,
types and, for channels without a position (``unknown_channels: index``), identities; so
recordings with different montages and sensor types mix freely. The store also carries what
the core's data summary and grouped splits read: ``labels``/``classes``/``task``, ``groups``
and ``group_kind``, ``sample_kind``, ``skipped`` and :meth:`WindowDataset.summary`.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from omnissl.errors import DataError
from omnissl_eeg.preprocessing import Windows


class WindowDataset:
    """Windows of several recordings, indexed flat.

    Args:
        recordings: the preprocessed windows of each recording.
        sources: a name for each recording (file path or object name).
        skipped: (source, reason) of each input that could not be used.
        labels: one sequence per recording with a value per window: a class name (str), a number,
            or None for unlabelled; None for the whole argument takes each recording's
            ``Windows.labels``.
        groups: the group of each recording (default: its source); see ``group_kind``.
        group_kind: what a group is (``"recording"``, ``"subject"``, ...).
        files: the number of source files used (0 for in-memory data).

    Attributes:
        labels: (len(self),) int class indices (float with NaN where some are unlabelled), floats
            for regression, or None when no window is labelled.
        classes: class names for int labels (index = label); empty when the labels are numbers.
        task: ``"classification"`` or ``"regression"``.
        groups: (len(self),) str: each window's group, the unit a held-out split keeps on one side.
        sample_kind: ``"epoch"`` when every sample is a whole epoch, else ``"window"``.
        channel_vocabulary: names of the channels identified by index (no position), sorted;
            identity ``i + 1`` is ``channel_vocabulary[i]``, 0 a channel with a position.
        identities: per recording, (C,) int64 identity of each channel.
        num_channels: (len(recordings),) channel count of each recording.
        window_length: samples per window when every recording's windows have the same
            length, else None.
    """

    task = "classification"
    sample_kind = "window"
    group_kind = "recording"
    epochs_source = "epochs files"  # what a source of epochs is called in summary()

    def __init__(self, recordings: Sequence[Windows], sources: Sequence[str],
                 skipped: Sequence[tuple[str, str]] = (), labels: Sequence[Sequence[Any] | None] | None = None,
                 groups: Sequence[str] | None = None, group_kind: str = "recording", files: int = 0):
        self.recordings = list(recordings)
        self.sources = list(sources)
        self.skipped = list(skipped)
        self.files = int(files)
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
        per_recording = [w.labels for w in self.recordings] if labels is None else list(labels)
        self.labels, self.classes, self.task = label_array(per_recording, counts)
        self.groups = np.repeat(np.asarray(list(groups) if groups is not None else self.sources, dtype=str), counts)
        self.group_kind = group_kind
        if all(w.report.get("sample") == "epoch" for w in self.recordings):
            self.sample_kind = "epoch"
        self.channel_vocabulary, self.identities = channel_identities(self.recordings)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = int(np.searchsorted(self.offsets, index, side="right")) - 1
        w = self.recordings[r]
        return {
            "signal": np.array(w.data[index - self.offsets[r]], dtype=np.float32),  # [C, T], copied off the mmap
            "positions": w.positions,  # [C, 3] metres (0 for channels identified by index)
            "types": w.types,  # [C] index into SENSOR_TYPES
            "identities": self.identities[r],  # [C] 0, or 1 + index into channel_vocabulary
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

    def run_files(self) -> dict[str, Any]:
        """The run's channel identities (the names ``data.unknown_channels: index`` numbered, in
        the order the encoder's identity table learns them) and montages, kept beside it as
        ``eeg_channels.json`` for exports (:func:`omnissl.datasets.write_run_files`; recorded in
        shards)."""
        from omnissl_eeg.braindecode import CHANNELS_FILE, channel_state

        return {CHANNELS_FILE: channel_state(self)}

    def summary(self) -> dict[str, int | float | str]:
        """Counts for the run's data summary, from what the windows' reports hold (no file is read):
        source files, continuous recordings and epochs sources, windows and epochs, what was
        rejected by peak-to-peak amplitude and dropped by BAD_ annotations, and channels dropped
        or identified by index."""
        reports = [w.report for w in self.recordings]
        sizes = [len(w.data) for w in self.recordings]
        raw = [i for i, r in enumerate(reports) if r.get("kind", "raw") == "raw"]
        epochs = [i for i, r in enumerate(reports) if r.get("kind") == "epochs"]
        whole = [i for i, r in enumerate(reports) if r.get("sample") == "epoch"]
        out: dict[str, int | float | str] = {"files": self.files, "recordings": len(raw)}
        if epochs:
            out[self.epochs_source] = len(epochs)
        cut = [i for i in range(len(reports)) if i not in set(whole)]
        if cut:
            out["windows"] = sum(sizes[i] for i in cut)
            out["windows rejected (peak-to-peak)"] = sum(int(reports[i].get("rejected", 0)) for i in cut)
        if raw:
            out["windows dropped (BAD_ annotations)"] = sum(int(reports[i].get("annotated", 0)) for i in raw)
        if whole:
            out["epochs"] = sum(sizes[i] for i in whole)
            out["epochs rejected (peak-to-peak)"] = sum(int(reports[i].get("rejected", 0)) for i in whole)
        facts = {"windows dropped (non-finite)": sum(int(r.get("nonfinite", 0)) for r in reports),
                 "channels dropped (marked bad, flat or NaN)": sum(len(r.get("bad_channels", {})) for r in reports),
                 "channels dropped (no position)": sum(len(r.get("no_position", [])) for r in reports),
                 "channel names identified by index": len(self.channel_vocabulary)}
        out.update({k: v for k, v in facts.items() if v})
        return out


def _class_order(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order (``2`` before ``10``), then names alphabetically."""
    try:
        return 0, float(name), name
    except ValueError:
        return 1, 0.0, name


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def label_array(per_recording: Sequence[Sequence[Any] | None],
                counts: np.ndarray) -> tuple[np.ndarray | None, list[str], str]:
    """(labels, classes, task) from one sequence of window labels per recording (None: unlabelled).

    Names give class indices (``classes`` sorted, numbers in numeric order); numbers are kept:
    whole numbers are classes, others a regression target. Int labels when every window is
    labelled, else float with NaN for the unlabelled; None when none is.
    """
    if all(part is None for part in per_recording):
        return None, [], "classification"
    values: list[Any] = []
    for part, count in zip(per_recording, counts.tolist()):
        part = [None] * count if part is None else list(np.asarray(part, dtype=object))
        if len(part) != count:
            raise ValueError(f"{len(part)} labels for a recording of {count} windows")
        values.extend(part)
    missing = np.array([_missing(v) for v in values], dtype=bool)
    if missing.all():
        return None, [], "classification"
    known = [v for v, m in zip(values, missing) if not m]
    out = np.full(len(values), np.nan)
    if any(isinstance(v, str) for v in known):
        classes = sorted({str(v) for v in known}, key=_class_order)
        index = {name: i for i, name in enumerate(classes)}
        out[~missing] = [index[str(v)] for v in known]
        return (out if missing.any() else out.astype(np.int64)), classes, "classification"
    out[~missing] = np.asarray(known, dtype=np.float64)
    whole = bool(np.allclose(out[~missing], np.round(out[~missing])))
    if whole and not missing.any():
        return out.astype(np.int64), [], "classification"
    return out, [], "classification" if whole else "regression"


def channel_identities(recordings: Sequence[Windows]) -> tuple[list[str], list[np.ndarray]]:
    """The sorted names of channels kept without a position (``unknown_channels: index``) across
    ``recordings``, and per recording each channel's identity: 1 + its index in those names, or 0."""
    indexed = [set(w.report.get("indexed", [])) for w in recordings]
    vocabulary = sorted(set().union(*indexed)) if indexed else []
    number = {name: i + 1 for i, name in enumerate(vocabulary)}
    identities = [np.array([number[c] if c in names else 0 for c in w.channels], dtype=np.int64)
                  for w, names in zip(recordings, indexed)]
    return vocabulary, identities
