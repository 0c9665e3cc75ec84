"""Opening ECG records: WFDB (``wfdb``), EDF/BDF (MNE) and numpy arrays with their lead names and rate.

Every reader returns a :class:`Record`: the signal in millivolts, one row per lead, with the
lead names as recorded and the sampling rate. A file that cannot be read raises
:class:`~omnissl.errors.DataError` naming it and the reason; data sets skip it by name.

* WFDB: a ``.hea`` header and the signal files it names (PhysioNet's format: MIT-BIH, PTB,
  PTB-XL, CPSC, Chapman, MIMIC-IV-ECG), read in physical units; ``uV``/``mV``/``V`` are converted.
* EDF/BDF: through MNE, which scales by each channel's physical dimension; MNE's volts are
  converted to millivolts. A file whose data records disagree with its header is refused.
* numpy: a ``.npz`` holding ``signal`` (leads, samples), ``leads`` (names) and ``sfreq``
  (and optionally ``units``, default ``mV``), or a ``.npy`` signal with a side file
  ``<stem>.json`` holding ``{"leads": [...], "sfreq": ..., "units": "mV"}``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnissl.errors import DataError

EXTENSIONS: tuple[str, ...] = (".hea", ".edf", ".bdf", ".npz", ".npy")
LOOKED_FOR = "WFDB headers (*.hea), EDF/BDF (*.edf, *.bdf), numpy (*.npz, *.npy with a <stem>.json)"
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass
class Record:
    """One ECG record.

    Attributes:
        signal: (leads, samples) float64 millivolts.
        leads: the lead names as recorded.
        sfreq: sampling rate in Hz.
    """

    signal: np.ndarray
    leads: list[str]
    sfreq: float


def find_records(root: Path) -> list[Path]:
    """Every record under ``root`` (recursive, sorted), by extension; hidden files are skipped."""
    return [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in EXTENSIONS]


def companions(path: Path) -> list[Path]:
    """The other files a record's content depends on: a WFDB header's signal files, a ``.npy``'s side file."""
    if path.suffix.lower() == ".npy":
        return [path.with_suffix(".json")]
    if path.suffix.lower() == ".hea":
        return sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.suffix.lower() not in (".hea", ".atr"))
    return []


def to_millivolts(unit: str, where: str) -> float:
    factor = _TO_MV.get(unit.strip().lower())
    if factor is None:
        raise DataError(f"{where}: unit {unit!r} is not a voltage (expected uV, mV or V)")
    return factor


def read_record(path: Path) -> Record:
    """Read one record by its extension.

    Raises:
        DataError: naming the file and what is wrong.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".hea":
            record = _read_wfdb(path)
        elif suffix in (".edf", ".bdf"):
            record = _read_edf(path)
        elif suffix in (".npz", ".npy"):
            record = _read_numpy(path)
        else:
            raise DataError(f"{path}: not an ECG record ({LOOKED_FOR})")
    except DataError:
        raise
    except Exception as exc:  # wfdb, MNE and numpy raise many types (ValueError, OSError, IndexError, ...)
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    signal = np.asarray(record.signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(record.leads) or signal.shape[1] < 2:
        raise DataError(f"{path}: a signal of shape {signal.shape} for {len(record.leads)} lead names; expected "
                        f"(leads, samples)")
    if not np.isfinite(record.sfreq) or record.sfreq <= 0:
        raise DataError(f"{path}: sampling rate {record.sfreq} is not a positive number")
    return Record(signal, [str(n) for n in record.leads], float(record.sfreq))


def _read_wfdb(path: Path) -> Record:
    import wfdb

    rec = wfdb.rdrecord(str(path.with_suffix("")), physical=True)
    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # [C, T]
    scale = np.array([to_millivolts(u or "mV", str(path)) for u in (rec.units or ["mV"] * len(rec.sig_name))])
    return Record(signal * scale[:, None], list(rec.sig_name), float(rec.fs))


# MNE's warnings that mean an EDF/BDF file is damaged; it then reads what it can.
_DAMAGED = ("Number of records from the header does not match",)


def _read_edf(path: Path) -> Record:
    import mne

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    damage = [str(w.message) for w in caught if any(text in str(w.message) for text in _DAMAGED)]
    if damage:
        raise DataError(f"{path} is damaged (truncated or corrupted): MNE: {damage[0]}")
    return Record(raw.get_data() * 1e3, list(raw.ch_names), float(raw.info["sfreq"]))  # V -> mV


def _read_numpy(path: Path) -> Record:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("signal", "leads", "sfreq") if k not in archive.files]
            if missing:
                raise DataError(f"{path}: an .npz record needs arrays signal, leads and sfreq; missing "
                                f"{', '.join(missing)} (it holds {', '.join(archive.files)})")
            signal, leads, sfreq = archive["signal"], archive["leads"].tolist(), float(archive["sfreq"])
            units = str(archive["units"]) if "units" in archive.files else "mV"
    else:
        side = path.with_suffix(".json")
        if not side.is_file():
            raise DataError(f"{path}: a .npy record needs a side file {side.name} with its lead names and rate, "
                            f'{{"leads": ["I", "II"], "sfreq": 500, "units": "mV"}}')
        meta = json.loads(side.read_text())
        if not isinstance(meta, dict) or "leads" not in meta or "sfreq" not in meta:
            raise DataError(f"{side}: expected an object with leads and sfreq, got {str(meta)[:100]}")
        signal, leads, sfreq = np.load(path, allow_pickle=False), list(meta["leads"]), float(meta["sfreq"])
        units = str(meta.get("units", "mV"))
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 2 and signal.shape[0] != len(leads) and signal.shape[1] == len(leads):
        signal = signal.T  # (samples, leads), as WFDB and most tools store it
    return Record(signal * to_millivolts(units, str(path)), [str(n) for n in leads], sfreq)
