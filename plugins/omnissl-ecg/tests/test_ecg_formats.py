"""Every reader on real recordings: WFDB, EDF and numpy files written from a real 12-lead ECG read back
the same millivolts; lead names in other conventions; records of 1, 3, 8 and 12 leads in one data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnissl_ecg import ECGFolder, read_record
from omnissl_ecg.leads import LEADS, OTHER, lead_index
from omnissl_ecg.readers import Record

PLAIN = dict(l_freq=None, h_freq=None, notch=None, sfreq=500.0, window_seconds=5.0, reject=None)


@pytest.mark.parametrize("suffix", [".hea", ".edf", ".npz", ".npy"])
def test_ecg_format_round_trip(twelve_lead, write, tmp_path: Path, suffix: str):
    write(twelve_lead, tmp_path / "data" / f"rec{suffix}")
    record = read_record(tmp_path / "data" / f"rec{suffix}")
    assert record.sfreq == 500.0 and record.leads == list(LEADS[:12]) and record.signal.shape == (12, 5000)
    np.testing.assert_allclose(record.signal, twelve_lead.signal, atol=0.01)  # 16-bit files: ~1e-3 mV steps
    data = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    assert data.skipped == [] and len(data) == 2  # 10 s in 5 s windows
    sample = data[1]
    assert sample["signal"].shape == (12, 2500) and sample["signal"].dtype == np.float32
    assert sample["leads"].tolist() == list(range(12)) and sample["sfreq"] == 500.0
    np.testing.assert_allclose(sample["signal"], twelve_lead.signal[:, 2500:], atol=0.01)
    assert 0.3 < float(np.ptp(sample["signal"][1])) < 5.0  # lead II's R waves, in millivolts


def test_ecg_single_lead_is_filtered_and_resampled(single_lead, write, tmp_path: Path):
    write(Record(single_lead.signal, ["MLII"], single_lead.sfreq), tmp_path / "data" / "holter.hea")
    data = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), sfreq=250.0, window_seconds=10.0,
                     l_freq=0.5, h_freq=40.0)
    assert len(data) == 2 and data[0]["signal"].shape == (1, 2500) and data[0]["leads"].tolist() == [1]  # MLII = II
    spectrum = np.abs(np.fft.rfft(data[0]["signal"][0]))
    freqs = np.fft.rfftfreq(2500, 1 / 250.0)
    assert spectrum[freqs > 60].max() < 0.05 * spectrum.max()  # the low-pass took out what is above 40 Hz
    assert abs(float(data[0]["signal"].mean())) < 0.05  # the high-pass took out the amplifier's offset


def test_ecg_lead_names_of_other_conventions():
    assert [lead_index(n) for n in ("Lead I (Einthoven)", "MLII", "DIII", "avr", "AVL", "V6", "vx", "ECG")] == [
        0, 1, 2, 3, 4, 11, 12, None]


def test_ecg_records_of_1_3_8_and_12_leads_in_one_data_set(mixed_folder: Path, tmp_path: Path):
    data = ECGFolder(str(mixed_folder), labels="folder", cache_dir=str(tmp_path / "cache"), **PLAIN)
    leads = {Path(s).name: w.leads.tolist() for s, w in zip(data.sources, data.recordings)}
    assert leads == {"twelve.edf": list(range(12)), "three.hea": [0, 1, 7],
                     "eight.npz": [0, 1, 6, 7, 8, 9, 10, 11], "one.npy": [1]}
    assert data.classes == ["a", "b"] and data.task == "classification"
    assert data.summary()["leads per record"] == "1, 3, 8, 12"
    assert len(set(data.groups.tolist())) == 4  # each record its own group


def test_ecg_cache_is_warm_and_follows_content(twelve_lead, write, leads_of, tmp_path: Path, monkeypatch):
    write(twelve_lead, tmp_path / "data" / "rec.npz")
    first = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    import omnissl_ecg.datasets as datasets

    def no_read(path):
        raise AssertionError(f"read {path} although its windows are cached")

    monkeypatch.setattr(datasets, "read_record", no_read)
    warm = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    assert isinstance(warm.recordings[0].data, np.memmap)
    np.testing.assert_array_equal(np.asarray(warm.recordings[0].data), np.asarray(first.recordings[0].data))
    monkeypatch.undo()
    write(leads_of(twelve_lead, ["I", "II"]), tmp_path / "data" / "rec.npz")  # rewritten in place
    changed = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    assert changed.recordings[0].leads.tolist() == [0, 1]


def test_ecg_unknown_leads_dropped_kept_or_fatal(single_lead, write, tmp_path: Path):
    from omnissl.errors import DataError

    write(Record(np.stack([single_lead.signal[0], single_lead.signal[0]]), ["ECG", "II"], 1000.0),
                 tmp_path / "data" / "wearable.npz")
    kwargs = dict(cache_dir=str(tmp_path / "cache"), **{**PLAIN, "sfreq": 250.0})
    with pytest.warns(UserWarning, match="wearable.npz: dropped ECG"):
        assert ECGFolder(str(tmp_path / "data"), **kwargs).recordings[0].leads.tolist() == [1]
    assert ECGFolder(str(tmp_path / "data"), unknown_leads="other", **kwargs).recordings[0].leads.tolist() == [OTHER, 1]
    with pytest.raises(DataError, match="ECG name no lead"):
        ECGFolder(str(tmp_path / "data"), unknown_leads="error", strict=True, **kwargs)
