"""From a record to clean fixed-length windows: leads identified, band-pass, notch, resample, cut.

Order: identify the leads (:mod:`omnissl_ecg.leads`), drop leads that are NaN or flat, band-pass
(zero-phase Butterworth, order 4: baseline wander below ``l_freq``, muscle noise above
``h_freq``), notch the mains frequency and its harmonics, resample to ``sfreq`` (polyphase, with
its anti-aliasing filter), cut windows with a stride, drop windows whose peak-to-peak in any
lead is beyond ``reject`` millivolts (a detached electrode, a saturated amplifier). With
``heart_rate``, each window's heart rate is measured for probes: the XQRS QRS detector of ``wfdb``
runs on lead II when the record has it (else its first lead) at the record's own rate, before
resampling (XQRS is tuned for clinical rates; at 100 Hz it takes T waves for beats), and a
window's rate is 60 over the median RR interval of the beats inside it (NaN with fewer than two).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from omnissl.errors import DataError
from omnissl_ecg.leads import LEADS, identify
from omnissl_ecg.readers import Record


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing settings; :meth:`key` identifies them in the window cache.

    Attributes:
        l_freq: high-pass edge in Hz (baseline wander), or None.
        h_freq: low-pass edge in Hz, or None; skipped at or above the record's Nyquist rate.
        notch: mains frequency in Hz (harmonics below Nyquist too), or None.
        sfreq: the rate every record is resampled to, in Hz.
        window_seconds: window length; None keeps each record whole.
        stride_seconds: step between window starts; None: ``window_seconds``.
        unknown_leads: ``drop``, ``error`` or ``other`` (see :func:`omnissl_ecg.leads.identify`).
        reject: peak-to-peak limit in mV per lead and window, or None to keep every window.
        heart_rate: measure each window's heart rate.
    """

    l_freq: float | None = 0.5
    h_freq: float | None = 100.0
    notch: float | None = 50.0
    sfreq: float = 500.0
    window_seconds: float | None = 10.0
    stride_seconds: float | None = None
    unknown_leads: str = "drop"
    reject: float | None = 20.0
    heart_rate: bool = False

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Windows:
    """Preprocessed windows of one record.

    Attributes:
        data: (windows, leads, samples) float32 millivolts.
        leads: the identity of each lead (index into :data:`~omnissl_ecg.leads.LEADS`, or OTHER).
        names: the leads' names as recorded.
        sfreq: sampling rate in Hz.
        heart_rate: (windows,) beats per minute (NaN where unmeasured), or None.
        report: what was dropped: ``bad_leads`` (name -> reason), ``rejected`` (windows beyond
            ``reject``), ``nonfinite``, ``windows`` (before rejection), ``seconds`` (record length).
    """

    data: np.ndarray
    leads: np.ndarray
    names: list[str]
    sfreq: float
    heart_rate: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"leads": self.leads.tolist(), "names": self.names, "sfreq": self.sfreq,
                "heart_rate": None if self.heart_rate is None else self.heart_rate.tolist(),
                "report": self.report, "shape": list(self.data.shape)}


def preprocess(record: Record, settings: Preprocessing, where: str) -> Windows:
    """Run the pipeline on one record (see the module docstring).

    Raises:
        DataError: naming ``where``, when no lead is usable.
    """
    from scipy.signal import butter, iirnotch, resample_poly, sosfiltfilt, tf2sos

    keep, leads = identify(record.leads, where, settings.unknown_leads)
    signal, names = record.signal[keep], [record.leads[r] for r in keep]
    bad = {}
    for c, name in enumerate(names):
        if not np.isfinite(signal[c]).all():
            bad[name] = "NaN or infinite samples"
        elif np.std(signal[c]) < 1e-4:  # 0.1 uV: no ECG is that quiet
            bad[name] = "flat"
    if len(bad) == len(names):
        raise DataError(f"{where}: every lead is unusable (" + ", ".join(f"{n}: {r}" for n, r in bad.items()) + ")")
    if bad:
        warnings.warn(f"{where}: dropped lead(s) " + ", ".join(f"{n} ({r})" for n, r in bad.items()))
        good = [c for c, name in enumerate(names) if name not in bad]
        signal, leads, names = signal[good], leads[good], [names[c] for c in good]
    rate = record.sfreq
    peaks = detect_beats(signal, leads, rate) * settings.sfreq if settings.heart_rate else None  # samples
    nyquist = rate / 2
    h_freq = settings.h_freq if settings.h_freq is not None and settings.h_freq < nyquist else None
    pad = min(signal.shape[1] - 1, int(3 * rate))  # sosfiltfilt's padding, within the record
    if settings.l_freq is not None or h_freq is not None:
        if settings.l_freq is not None and h_freq is not None:
            sos = butter(4, [settings.l_freq, h_freq], btype="bandpass", fs=rate, output="sos")
        elif settings.l_freq is not None:
            sos = butter(4, settings.l_freq, btype="highpass", fs=rate, output="sos")
        else:
            sos = butter(4, h_freq, btype="lowpass", fs=rate, output="sos")
        signal = sosfiltfilt(sos, signal, axis=1, padlen=pad)
    if settings.notch is not None:
        for line in np.arange(settings.notch, nyquist - 1.0, settings.notch):
            signal = sosfiltfilt(tf2sos(*iirnotch(line, 30.0, fs=rate)), signal, axis=1, padlen=pad)
    if abs(rate - settings.sfreq) > 1e-9:
        ratio = Fraction(settings.sfreq / rate).limit_denominator(1000)
        signal = resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)
    with np.errstate(over="ignore"):
        signal = signal.astype(np.float32)
    windows, starts = cut_windows(signal, settings)
    total = len(windows)
    finite = np.isfinite(windows).all(axis=(1, 2))  # a sample beyond float32's range is inf: never cached
    nonfinite = int((~finite).sum())
    if nonfinite:
        warnings.warn(f"{where}: dropped {nonfinite} window(s) holding non-finite values (samples beyond float32)")
    ok = finite
    if settings.reject is not None and total:
        with np.errstate(invalid="ignore"):
            ok = ok & (np.ptp(windows, axis=2) <= settings.reject).all(axis=1)
    rejected = int((finite & ~ok).sum())
    beats = None if peaks is None else heart_rates(peaks, settings.sfreq, starts[ok], windows.shape[2])
    return Windows(np.ascontiguousarray(windows[ok]), leads, names, float(settings.sfreq), beats,
                   {"bad_leads": bad, "rejected": rejected, "nonfinite": nonfinite, "windows": total,
                    "seconds": float(record.signal.shape[1] / rate)})


def cut_windows(signal: np.ndarray, settings: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """(C, T) -> (W, C, L) windows and (W,) their start samples; the whole record when
    ``window_seconds`` is None; none when the record is shorter than a window."""
    if settings.window_seconds is None:
        return signal[None], np.zeros(1, dtype=np.int64)
    length = int(round(settings.window_seconds * settings.sfreq))
    stride = int(round((settings.stride_seconds or settings.window_seconds) * settings.sfreq))
    if signal.shape[1] < length:
        return np.zeros((0, signal.shape[0], length), np.float32), np.zeros(0, dtype=np.int64)
    starts = np.arange(0, signal.shape[1] - length + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(signal, length, axis=1)[:, starts]  # [C, W, L]
    return view.transpose(1, 0, 2), starts


def detect_beats(signal: np.ndarray, leads: np.ndarray, sfreq: float) -> np.ndarray:
    """(beats,) times in seconds of the QRS complexes XQRS finds on lead II (else the first lead).

    XQRS learns its thresholds from the first seconds and depends on the signal's scale: it finds
    nothing in a lead with a DC offset, in some leads at their true millivolts, and at 4 kHz. So
    it sees the lead band-passed to 0.5-40 Hz, at 500 Hz at most, scaled so that its 99th
    percentile of magnitude is 5 (on this plugin's example recordings, 1 to 7 minutes long at 200
    to 4000 Hz, that finds the same beats at scales 2, 5 and 10).
    """
    from scipy.signal import butter, resample_poly, sosfiltfilt
    from wfdb.processing import xqrs_detect

    row = int(np.flatnonzero(leads == LEADS.index("II"))[0]) if (leads == LEADS.index("II")).any() else 0
    sos = butter(2, [0.5, min(40.0, 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")
    lead = sosfiltfilt(sos, signal[row].astype(np.float64), padlen=min(signal.shape[1] - 1, int(3 * sfreq)))
    rate = sfreq
    if sfreq > 500.0:
        ratio = Fraction(500.0 / sfreq).limit_denominator(1000)
        lead, rate = resample_poly(lead, ratio.numerator, ratio.denominator), sfreq * ratio.numerator / ratio.denominator
    level = float(np.percentile(np.abs(lead), 99))
    if level <= 0:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XQRS warns on short or flat stretches; those windows get NaN
        return np.asarray(xqrs_detect(lead * (5.0 / level), fs=rate, verbose=False), dtype=np.float64) / rate


def heart_rates(peaks: np.ndarray, sfreq: float, starts: np.ndarray, length: int) -> np.ndarray:
    """(W,) beats per minute in each window ``[start, start + length)`` (samples at ``sfreq``, as
    ``peaks``): 60 over the median RR interval of the beats inside it; NaN with fewer than two."""
    rates = np.full(len(starts), np.nan)
    for w, start in enumerate(starts.tolist()):
        inside = peaks[(peaks >= start) & (peaks < start + length)]
        if len(inside) >= 2:
            rates[w] = 60.0 * sfreq / float(np.median(np.diff(inside)))
    return rates
