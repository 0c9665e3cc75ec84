"""Shared fixtures of the ECG plugin's tests: real recordings from pip packages, and writers that put
them into each format the readers take (WFDB with wfdb, EDF with MNE/edfio, numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnissl_ecg.examples import package_folder, read_dicom_ecg, read_opensignals_text
from omnissl_ecg.readers import Record


@pytest.fixture(scope="session")
def twelve_lead() -> Record:
    """A real resting 12-lead ECG: 10 s at 500 Hz, in mV (ecgprocess's GE MUSE DICOM export)."""
    return read_dicom_ecg(package_folder("ecgprocess") / "example_data" / "example_datasets" / "example-DICOM1.dcm")


@pytest.fixture(scope="session")
def single_lead() -> Record:
    """A real single-lead ECG: 22 s at 1000 Hz, in mV (pyhrv's BITalino recording)."""
    return read_opensignals_text(package_folder("pyhrv") / "files" / "SampleECG.txt")


def write_record(record: Record, path: Path) -> Path:
    """Write ``record`` in the format of ``path``'s extension: .hea (WFDB, 16-bit), .edf (EDF through
    MNE's exporter), .npz, or .npy with its .json side file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".hea":
        import wfdb

        wfdb.wrsamp(path.stem, fs=record.sfreq, units=["mV"] * len(record.leads), sig_name=list(record.leads),
                    p_signal=record.signal.T, fmt=["16"] * len(record.leads), write_dir=str(path.parent))
    elif suffix in (".edf", ".bdf"):
        import mne

        info = mne.create_info(list(record.leads), record.sfreq, "ecg")
        raw = mne.io.RawArray(record.signal * 1e-3, info, verbose="error")  # mV -> V, MNE's unit
        mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    elif suffix == ".npz":
        np.savez(path, signal=record.signal, leads=np.array(record.leads), sfreq=record.sfreq)
    elif suffix == ".npy":
        np.save(path, record.signal)
        path.with_suffix(".json").write_text(json.dumps({"leads": list(record.leads), "sfreq": record.sfreq}))
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture(scope="session")
def write():
    """``write(record, path)``: see :func:`write_record`."""
    return write_record


def subset(record: Record, names: list[str]) -> Record:
    """The leads ``names`` of a record (a 3-lead Holter, an 8-lead set)."""
    rows = [record.leads.index(n) for n in names]
    return Record(record.signal[rows], names, record.sfreq)


@pytest.fixture(scope="session")
def leads_of():
    """``leads_of(record, names)``: see :func:`subset`."""
    return subset


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory, twelve_lead, single_lead) -> Path:
    """Real records of 1, 3, 8 and 12 leads in four formats, under class folders a/ and b/."""
    root = tmp_path_factory.mktemp("mixed")
    write_record(twelve_lead, root / "a" / "twelve.edf")
    write_record(subset(twelve_lead, ["I", "II", "V2"]), root / "a" / "three.hea")
    write_record(subset(twelve_lead, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]), root / "b" / "eight.npz")
    write_record(Record(single_lead.signal, ["II"], single_lead.sfreq), root / "b" / "one.npy")
    return root
