"""From an MNE recording to clean fixed-length windows: the LaBraM-style pipeline, every step a setting.

Order (Jiang et al., "Large Brain Model for Learning Generic Representations with
Tremendous EEG Data in BCI", ICLR 2024, section 3 / appendix): pick sensor types,
drop unusable (NaN or flat) channels, locate sensors, band-pass, notch, resample,
(epochs: crop to tmin/tmax), re-reference, scale to field units, cut windows with a stride,
drop windows overlapping ``BAD_``/``EDGE`` annotations (as MNE's ``reject_by_annotation``),
reject windows whose peak-to-peak amplitude is implausible. Everything numerical is done by MNE,
under MNE's ``warning`` log level: a cold cache of hundreds of files prints no line per file.
"""

from __future__ import annotations

import json
import mmap
import struct
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from omnissl.errors import DataError
from omnissl_eeg.sensors import SENSOR_TYPES, UNIT_NAME, UNIT_SCALE, channel_positions

# Peak-to-peak limits per window in field units (uV, fT, fT/cm): MNE's tutorial values for MEG,
# a generous EEG limit (pre-training keeps real artefacts; it drops only broken segments).
DEFAULT_REJECT: dict[str, float] = {"eeg": 1000.0, "mag": 4000.0, "grad": 4000.0}
# A channel's usual standard deviation in field units, to tell a flat recording from one in the wrong unit.
_TYPICAL_STD: dict[str, float] = {"eeg": 10.0, "mag": 100.0, "grad": 100.0}


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing settings; :meth:`key` identifies them in the window cache.

    Attributes:
        pick: sensor types to keep (``eeg``, ``mag``, ``grad``).
        l_freq: high-pass edge in Hz, or None.
        h_freq: low-pass edge in Hz, or None; ignored when above the recording's Nyquist rate.
        notch: line frequency in Hz (its harmonics below Nyquist are removed too), or None.
        sfreq: target sampling rate in Hz (LaBraM: 200).
        reference: ``"average"`` (EEG common average) or None to keep the recorded reference.
        window_seconds: window length; None keeps each recording or epoch whole.
        stride_seconds: step between window starts; None means ``window_seconds`` (no overlap).
        reject: peak-to-peak limit per sensor type in field units; a window with any channel
            above its limit is dropped. None keeps every window.
        unknown_channels: for channels with no position: ``"drop"`` (with a warning), ``"error"``,
            or ``"index"`` (kept at position 0, identified by a learned per-channel embedding).
        flat_threshold: a channel whose standard deviation (field units) is below this is flat.
        reject_by_annotation: drop the windows of a continuous recording that overlap an
            annotation whose description starts with ``BAD`` or ``EDGE`` (as MNE does).
        tmin: epochs only: the start of each epoch, in seconds from its event; None keeps the epochs' own.
        tmax: epochs only: the end (excluded), in seconds from the event; None keeps the epochs' own.
    """

    pick: tuple[str, ...] = SENSOR_TYPES
    l_freq: float | None = 0.1
    h_freq: float | None = 75.0
    notch: float | None = 50.0
    sfreq: float = 200.0
    reference: str | None = "average"
    window_seconds: float | None = 4.0
    stride_seconds: float | None = None
    reject: dict[str, float] | None = field(default_factory=lambda: dict(DEFAULT_REJECT))
    unknown_channels: str = "drop"
    flat_threshold: float = 1e-3
    reject_by_annotation: bool = True
    tmin: float | None = None
    tmax: float | None = None

    def __post_init__(self) -> None:
        bad = [t for t in self.pick if t not in SENSOR_TYPES]
        if bad or not self.pick:
            raise DataError(f"data.pick must list some of {', '.join(SENSOR_TYPES)}, got {list(self.pick)}")
        if self.reference not in (None, "average"):
            raise DataError(f"data.reference must be 'average' or null, got {self.reference!r}")
        if self.unknown_channels not in ("drop", "error", "index"):
            raise DataError(f"data.unknown_channels must be 'drop', 'error' or 'index', got "
                            f"{self.unknown_channels!r}")
        if self.tmin is not None and self.tmax is not None and self.tmax <= self.tmin:
            raise DataError(f"data.tmax ({self.tmax}) must be after data.tmin ({self.tmin})")
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise DataError(f"data.window_seconds must be positive, got {self.window_seconds}")

    def key(self) -> str:
        """A stable JSON text of every setting (part of the cache key)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Windows:
    """Preprocessed windows of one recording.

    Attributes:
        data: (num_windows, num_channels, num_samples) float32 in field units (uV, fT, fT/cm).
        channels: channel names, length num_channels.
        types: (num_channels,) int64 index into :data:`SENSOR_TYPES`.
        positions: (num_channels, 3) float32 sensor positions in metres.
        sfreq: sampling rate in Hz.
        labels: (num_windows,) labels given with the data (in-memory arrays), or None.
        events: per window, the names of the events it falls in, most specific first (see
            :func:`window_events`): an epoch's event name, or the annotations of a continuous
            recording (BIDS: its ``events.tsv``); None when the recording has none.
        report: ``kind`` (``"raw"`` or ``"epochs"``), ``sample`` (``"window"``, or ``"epoch"`` for
            whole epochs); what was dropped: ``bad_channels`` (name -> reason), ``no_position``
            (channels without a position, dropped), ``rejected`` (window count, by amplitude),
            ``annotated`` (windows overlapping BAD_/EDGE annotations), ``nonfinite`` (windows with
            NaN/inf samples); ``indexed`` (channels without a position kept, identified by index);
            and ``windows`` (count before rejection), ``seconds`` (longest segment), ``reject``
            (the limits used), ``ptp`` (sensor type -> median peak-to-peak over windows and
            channels) for :func:`no_window_reason`.
    """

    data: np.ndarray
    channels: list[str]
    types: np.ndarray
    positions: np.ndarray
    sfreq: float
    labels: np.ndarray | None = None
    events: list[list[str]] | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """Everything but the data, JSON-serialisable (the cache's side file)."""
        return {"channels": self.channels, "types": self.types.tolist(), "positions": self.positions.tolist(),
                "sfreq": self.sfreq, "labels": None if self.labels is None else self.labels.tolist(),
                "events": self.events, "report": self.report, "shape": list(self.data.shape)}

    def __getstate__(self) -> dict[str, Any]:
        """A memory-mapped cache pickles as its file name (to DataLoader workers started by
        spawn or forkserver), not as a copy of every window."""
        state = dict(self.__dict__)
        data = self.data
        # Only a whole mapping: a slice of a memmap keeps its parent's offset.
        if isinstance(data, np.memmap) and data.filename is not None and isinstance(data.base, mmap.mmap):
            state["data"] = ("memmap", data.filename, data.offset, data.shape, data.dtype.str)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state["data"]
        if isinstance(data, tuple) and data[0] == "memmap":
            _, filename, offset, shape, dtype = data
            state["data"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=tuple(shape))
        self.__dict__.update(state)


def _drop_unusable(inst: Any, where: str, settings: Preprocessing) -> dict[str, str]:
    """Drop channels the recording marks bad (``info["bads"]``: a FIF's bads, BIDS
    ``channels.tsv`` status), NaN anywhere, or flat; warn naming them. Returns name -> reason."""
    data = inst.get_data()  # raw: (C, T); epochs: (E, C, T)
    data = data if data.ndim == 3 else data[None]
    types = inst.get_channel_types()
    marked = set(inst.info["bads"])
    bad: dict[str, str] = {}
    stds: dict[str, float] = {}  # field units, of the finite channels
    for c, name in enumerate(inst.ch_names):
        x = data[:, c]
        if name in marked:
            bad[name] = "marked bad in the recording"
        elif not np.isfinite(x).all():
            bad[name] = "NaN or infinite samples"
        else:
            stds[name] = float(np.std(x)) * UNIT_SCALE[types[c]]
            if stds[name] < settings.flat_threshold:
                bad[name] = "flat"
    if len(bad) == len(inst.ch_names):  # MNE cannot drop them all; and the file is unusable, say why
        raise DataError(f"{where}: {_all_unusable(bad, stds, types, settings)}")
    if bad:
        warnings.warn(f"{where}: dropped channel(s) " + ", ".join(f"{n} ({r})" for n, r in bad.items()))
        inst.drop_channels(list(bad))
    return bad


def _all_unusable(bad: dict[str, str], stds: dict[str, float], types: list[str], settings: Preprocessing) -> str:
    """Why every channel of a recording is unusable, with a unit diagnosis when all are flat."""
    counts: dict[str, int] = {}
    for reason in bad.values():
        counts[reason] = counts.get(reason, 0) + 1
    text = "every channel is unusable (" + ", ".join(f"{n} {r}" for r, n in counts.items()) + ")"
    if counts.get("flat") != len(bad):
        return text
    kind = types[0] if len(set(types)) == 1 else None
    unit = UNIT_NAME[kind] if kind else "field units"
    largest = max(stds.values())
    text += (f": the largest standard deviation is {largest:.3g} {unit}, below flat_threshold "
             f"{settings.flat_threshold:g}")
    if largest == 0.0:
        return text + "; the samples are constant (an empty recording)"
    if kind is not None:
        power = round(float(np.log10(_TYPICAL_STD[kind] / largest)))
        text += (f"; real {kind.upper()} varies by ~{_TYPICAL_STD[kind]:g} {unit}: if this is a recording, its "
                 f"samples are in the wrong unit (about 1e{power} too small, e.g. volts written where the file's "
                 f"unit says microvolts); fix the file's scaling")
    return text


def no_window_reason(windows: Windows, settings: Preprocessing | None = None) -> str:
    """Why a recording yielded no window: every window rejected (with the limits, the typical
    peak-to-peak found and a unit diagnosis), non-finite, overlapping BAD_ annotations, or the
    recording shorter than a window."""
    report = windows.report
    total, rejected = int(report.get("windows", 0)), int(report.get("rejected", 0))
    nonfinite, annotated = int(report.get("nonfinite", 0)), int(report.get("annotated", 0))
    if total and annotated >= total:
        return (f"every window ({total}) overlaps a BAD_ or EDGE annotation (a segment marked bad in the "
                f"recording); set data.reject_by_annotation: false to keep them")
    if total and rejected + nonfinite + annotated >= total and rejected:
        limits = report.get("reject") or {}
        ptp = {t: v for t, v in (report.get("ptp") or {}).items() if t in limits}  # the types with a limit
        found = ", ".join(f"{t} {ptp[t]:.3g} {UNIT_NAME[t]}" for t in ptp)
        limit = ", ".join(f"{t} {limits[t]:g} {UNIT_NAME[t]}" for t in ptp)
        # Real signals' peak-to-peak over a window is a few standard deviations (EEG: tens of uV).
        powers = [round(float(np.log10(ptp[t] / (5 * _TYPICAL_STD[t])))) for t in ptp if ptp[t] > 0]
        power = max(powers, default=0)
        hint = (f"; that is about 1e{power} times real {'/'.join(t.upper() for t in ptp)}: probably a unit problem "
                f"(samples about 1e{power} too large, e.g. millivolts or volts stored where the file's unit says "
                f"microvolts); fix the file's units, or raise data.reject if such amplitudes are real"
                if power >= 2 else "; raise data.reject if such amplitudes are real")
        others = "".join(f", {n} {what}" for n, what in ((nonfinite, "non-finite"), (annotated, "in BAD_ annotations"))
                         if n)
        return (f"every window was rejected ({rejected} of {total}{others}): "
                f"peak-to-peak above data.reject ({limit}); typical peak-to-peak found {found} "
                f"(median over windows and channels){hint}")
    if total and nonfinite + annotated >= total:
        return f"every window ({total}) holds NaN or infinite values after scaling to field units"
    seconds = report.get("seconds")
    length = f" ({seconds:g} s)" if isinstance(seconds, (int, float)) else ""
    window = f" of {settings.window_seconds:g} s" if settings is not None and settings.window_seconds else ""
    return f"no window: the recording{length} is shorter than one window{window} (data.window_seconds)"


def preprocess(inst: Any, settings: Preprocessing, where: str, labels: np.ndarray | None = None) -> Windows:
    """Run the pipeline on an ``mne.io.Raw`` or ``mne.Epochs`` (modified in place; pass a copy to keep yours).

    MNE runs at its ``warning`` level here: its informative lines ("Reading 0 ... 99", one per
    file) are not printed, its warnings are.

    Args:
        inst: a preloadable Raw or Epochs.
        settings: the preprocessing settings.
        where: the file or object name, for messages.
        labels: (num_epochs,) labels of Epochs, or None.

    Returns:
        :class:`Windows` (possibly with zero windows, when all were rejected).
    """
    import mne

    with mne.use_log_level("warning"):
        return _preprocess(inst, settings, where, labels)


def _preprocess(inst: Any, settings: Preprocessing, where: str, labels: np.ndarray | None) -> Windows:
    import mne

    is_epochs = isinstance(inst, mne.BaseEpochs)
    present = set(inst.get_channel_types())
    picks = [t for t in settings.pick if t in present]
    if not picks:
        raise DataError(f"{where}: no channel of type {', '.join(settings.pick)} (it has {', '.join(sorted(present))}); "
                        f"set the channel types (MNE set_channel_types) or change data.pick")
    if is_epochs:
        inst.load_data()  # Epochs pick channels only once loaded; Raw loads only the picked ones
    inst.pick(picks)
    try:
        inst.load_data()
    except (ValueError, OSError, RuntimeError, EOFError, struct.error) as exc:  # damage past the header fails here
        raise DataError(f"cannot read the samples of {where} (damaged or truncated?): {type(exc).__name__}: "
                        f"{exc}") from exc
    bad = _drop_unusable(inst, where, settings)
    keep, positions, unlocated = channel_positions(inst.info, where, settings.unknown_channels)
    inst.pick(keep)
    nyquist = inst.info["sfreq"] / 2
    h_freq = settings.h_freq if settings.h_freq is not None and settings.h_freq < nyquist else None
    if settings.l_freq is not None or h_freq is not None:
        inst.filter(settings.l_freq, h_freq, verbose="error")
    if settings.notch is not None and not is_epochs:
        line = np.arange(settings.notch, nyquist, settings.notch)
        if line.size:
            inst.notch_filter(line, verbose="error")
    if inst.info["sfreq"] != settings.sfreq:
        inst.resample(settings.sfreq, verbose="error")
    if is_epochs and (settings.tmin is not None or settings.tmax is not None):
        _crop_epochs(inst, settings, where)
    types_named = inst.get_channel_types()
    if settings.reference == "average" and types_named.count("eeg") > 1:
        inst.set_eeg_reference("average", projection=False, verbose="error")
    scale = np.array([UNIT_SCALE[t] for t in types_named])[:, None]
    data = inst.get_data()
    data = data if is_epochs else data[None]  # [E, C, T]
    with np.errstate(over="ignore"):  # a sample beyond float32's range becomes inf, dropped below with a warning
        data = (data * scale).astype(np.float32)
    windows, owner, starts = cut_windows(data, settings)
    total = len(windows)
    if is_epochs:
        names = {code: name for name, code in inst.event_id.items()}
        events: list[list[str]] | None = [[names.get(int(code), str(int(code)))] for code in inst.events[:, 2]]
        events = [events[e] for e in owner.tolist()]
        annotated = 0
    else:
        bad_spans, labelled = _annotation_spans(inst)
        length = windows.shape[2]
        annotated_mask = (_overlapping(starts, length, bad_spans) if settings.reject_by_annotation
                          else np.zeros(len(starts), bool))
        annotated = int(annotated_mask.sum())
        events = window_events(starts, length, labelled) if labelled else None
        if annotated:
            windows, owner, starts = windows[~annotated_mask], owner[~annotated_mask], starts[~annotated_mask]
            events = None if events is None else [e for e, out in zip(events, annotated_mask) if not out]
    # No NaN or inf ever reaches the cache or a statistic: NaN channels were dropped above, but a
    # finite sample beyond float32's range after scaling (a corrupt 1e35 V sample) becomes inf here.
    nonfinite = 0
    if not np.isfinite(data).all():
        finite = np.isfinite(windows).all(axis=(1, 2))
        nonfinite = int((~finite).sum())
        if nonfinite:
            warnings.warn(f"{where}: dropped {nonfinite} window(s) holding NaN or infinite values after scaling "
                          f"to field units (samples beyond float32's range: a corrupt sample or a wrong unit)")
            windows, owner = windows[finite], owner[finite]
            events = None if events is None else [e for e, ok in zip(events, finite) if ok]
    rejected, ptp_typical = 0, {}
    if settings.reject and len(windows):
        peak = np.ptp(windows, axis=2)  # [W, C]
        limit = np.array([settings.reject.get(t, np.inf) for t in types_named], dtype=np.float32)
        ok = (peak <= limit).all(axis=1)
        rejected = int((~ok).sum())
        windows, owner = windows[ok], owner[ok]
        events = None if events is None else [e for e, kept in zip(events, ok) if kept]
        ptp_typical = {t: float(np.median(peak[:, [c for c, u in enumerate(types_named) if u == t]]))
                       for t in dict.fromkeys(types_named)}
    indexed = unlocated if settings.unknown_channels == "index" else []
    return Windows(
        data=np.ascontiguousarray(windows),
        channels=list(inst.ch_names),
        types=np.array([SENSOR_TYPES.index(t) for t in types_named], dtype=np.int64),
        positions=positions.astype(np.float32),
        sfreq=float(inst.info["sfreq"]),
        labels=None if labels is None else np.asarray(labels)[owner],
        events=events,
        report={"kind": "epochs" if is_epochs else "raw",
                "sample": "epoch" if is_epochs and settings.window_seconds is None else "window",
                "bad_channels": bad, "no_position": [] if indexed else unlocated, "indexed": indexed,
                "rejected": rejected, "annotated": annotated, "nonfinite": nonfinite, "windows": total,
                "seconds": float(data.shape[2] / inst.info["sfreq"]),
                "reject": dict(settings.reject) if settings.reject else None, "ptp": ptp_typical},
    )


def _crop_epochs(epochs: Any, settings: Preprocessing, where: str) -> None:
    """Crop epochs to ``[tmin, tmax)`` seconds from their event, within the epochs' own span."""
    start, stop = float(epochs.tmin), float(epochs.tmax)
    tmin = start if settings.tmin is None else settings.tmin
    tmax = stop if settings.tmax is None else settings.tmax
    step = 0.5 / epochs.info["sfreq"]  # half a sample: the epochs' last sample time is their tmax
    if tmin < start - step or tmax > stop + 2 * step:
        raise DataError(f"{where}: data.tmin/tmax ({tmin:g}, {tmax:g} s) reach outside its epochs, which span "
                        f"{start:g} to {stop:g} s around their events")
    epochs.crop(tmin, min(tmax, stop), include_tmax=tmax > stop + step / 2)


def _annotation_spans(raw: Any) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """A continuous recording's annotations in samples from its first sample: (K, 2) ``[onset, end)``
    of those whose description starts with BAD or EDGE (as MNE's ``reject_by_annotation``), and
    (onset, end, description) of the others, latest onset first."""
    annotations = raw.annotations
    if not len(annotations):
        return np.zeros((0, 2), np.int64), []
    sfreq = raw.info["sfreq"]
    onsets = np.round((annotations.onset - raw.first_time) * sfreq).astype(np.int64)  # onsets count from orig_time
    ends = onsets + np.round(annotations.duration * sfreq).astype(np.int64)
    bad = np.array([d.upper().startswith(("BAD", "EDGE")) for d in annotations.description], dtype=bool)
    others = [(int(o), int(e), str(d)) for o, e, d, b in zip(onsets, ends, annotations.description, bad) if not b]
    others.sort(key=lambda span: -span[0])
    return np.stack([onsets[bad], ends[bad]], axis=1), others


def _overlapping(starts: np.ndarray, length: int, spans: np.ndarray) -> np.ndarray:
    """(W,) whether each window ``[start, start + length)`` overlaps a span ``[onset, end)``; a
    zero-length span (a boundary) overlaps the windows it falls strictly inside."""
    hit = np.zeros(len(starts), dtype=bool)
    for onset, end in spans.tolist():
        if end > onset:
            hit |= (starts < end) & (starts + length > onset)
        else:
            hit |= (starts < onset) & (starts + length > onset)
    return hit


def window_events(starts: np.ndarray, length: int, spans: list[tuple[int, int, str]]) -> list[list[str]]:
    """The events each window falls in, most specific first: an annotation with a duration holds
    a window when it holds the window's centre sample; a zero-duration one (an event marker)
    holds the windows it falls inside. Among several, the latest onset comes first.

    Args:
        starts: (W,) window starts in samples.
        length: window length in samples.
        spans: (onset, end, description) in samples, latest onset first.
    """
    centres = starts + length // 2
    found: list[list[str]] = [[] for _ in range(len(starts))]
    for onset, end, description in spans:
        held = (centres >= onset) & (centres < end) if end > onset else (starts <= onset) & (starts + length > onset)
        for w in np.flatnonzero(held).tolist():
            found[w].append(description)
    return found


def cut_windows(data: np.ndarray, settings: Preprocessing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, C, T) segments -> (W, C, L) windows, (W,) index of the segment each came from, and
    (W,) the sample each starts at in its segment."""
    if settings.window_seconds is None:
        return data, np.arange(len(data)), np.zeros(len(data), dtype=np.int64)
    length = int(round(settings.window_seconds * settings.sfreq))
    stride = int(round((settings.stride_seconds or settings.window_seconds) * settings.sfreq))
    if data.shape[2] < length:
        return (np.zeros((0, data.shape[1], length), np.float32), np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64))
    starts = np.arange(0, data.shape[2] - length + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(data, length, axis=2)[:, :, starts]  # [E, C, W, L]
    windows = view.transpose(0, 2, 1, 3).reshape(-1, data.shape[1], length)
    return windows, np.repeat(np.arange(len(data)), len(starts)), np.tile(starts, len(data))
