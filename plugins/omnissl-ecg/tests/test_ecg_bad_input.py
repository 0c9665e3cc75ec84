"""Bad input: broken records are skipped with a warning naming them and counted (fatal with strict), a
NaN lead is dropped and reported, windows beyond the amplitude limit are rejected, and nothing
readable is a clear DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_ecg import ECGFolder, ECGManifest
from omnissl_ecg.readers import Record

PLAIN = dict(l_freq=None, h_freq=None, notch=None, sfreq=500.0, window_seconds=5.0, reject=None)


def test_ecg_broken_files_are_skipped_by_name(twelve_lead, write, tmp_path: Path):
    good = write(twelve_lead, tmp_path / "data" / "a_good.edf")
    write(twelve_lead, tmp_path / "data" / "d_good.hea")
    (tmp_path / "data" / "b_truncated.edf").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "data" / "c_garbage.hea").write_text("this is no WFDB header\n")
    np.save(tmp_path / "data" / "e_no_side_file.npy", twelve_lead.signal)
    with pytest.warns(UserWarning) as caught:
        data = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    messages = " ".join(str(w.message) for w in caught)
    for name in ("b_truncated.edf", "c_garbage.hea", "e_no_side_file.npy"):
        assert name in messages
    assert [Path(s).name for s, _ in data.skipped] == ["b_truncated.edf", "c_garbage.hea", "e_no_side_file.npy"]
    assert "e_no_side_file.json" in dict((Path(s).name, r) for s, r in data.skipped)["e_no_side_file.npy"]
    assert [Path(s).name for s in data.sources] == ["a_good.edf", "d_good.hea"]
    assert data.summary()["records skipped"] == 3
    with pytest.raises(DataError, match="b_truncated.edf"):
        ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), strict=True, **PLAIN)


def test_ecg_nothing_readable_is_a_data_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no ECG record under"):
        ECGFolder(str(tmp_path / "empty"), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.hea").write_text("x 2 500\n")
    with pytest.warns(UserWarning, match="x.hea"), pytest.raises(DataError, match="no readable ECG record"):
        ECGFolder(str(tmp_path / "broken"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not a folder"):
        ECGFolder(str(tmp_path / "missing"))


def test_ecg_nan_lead_dropped_and_short_record_skipped(twelve_lead, write, tmp_path: Path):
    signal = twelve_lead.signal.copy()
    signal[4, 100:200] = np.nan
    write(Record(signal, twelve_lead.leads, 500.0), tmp_path / "data" / "nan_lead.npz")
    write(Record(twelve_lead.signal[:, :1000], twelve_lead.leads, 500.0), tmp_path / "data" / "short.npz")
    with pytest.warns(UserWarning) as caught:
        data = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **PLAIN)
    messages = " ".join(str(w.message) for w in caught)
    assert "nan_lead.npz: dropped lead(s) aVL (NaN or infinite samples)" in messages
    assert "short.npz" in messages and "shorter than data.window_seconds" in messages
    assert data.recordings[0].leads.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert np.isfinite(data.recordings[0].data).all()


def test_ecg_windows_beyond_the_amplitude_limit_are_rejected(twelve_lead, write, tmp_path: Path):
    signal = twelve_lead.signal.copy()
    signal[6, 3000:3010] += 50.0  # a 50 mV spike: a detached electrode, in the second window
    write(Record(signal, twelve_lead.leads, 500.0), tmp_path / "data" / "spike.npz")
    data = ECGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **{**PLAIN, "reject": 20.0})
    assert len(data) == 1 and data.recordings[0].report["rejected"] == 1
    assert data.summary()["windows rejected (peak-to-peak)"] == 1


def test_ecg_manifest_labels_groups_and_missing_rows(twelve_lead, single_lead, write, tmp_path: Path):
    write(twelve_lead, tmp_path / "p1" / "rest.hea")
    write(Record(single_lead.signal, ["I"], 1000.0), tmp_path / "p2" / "walk.npz")
    (tmp_path / "list.csv").write_text("path,label,patient\np1/rest.hea,normal,p1\np2/walk.npz,n/a,p2\n"
                                       "p3/gone.edf,normal,p3\n")
    with pytest.warns(UserWarning, match="gone.edf"):
        data = ECGManifest(str(tmp_path / "list.csv"), group_column="patient", cache_dir=str(tmp_path / "cache"),
                           **PLAIN)
    assert data.classes == ["normal"] and np.isnan(data.labels[-1]) and data.labels[0] == 0
    assert sorted(set(data.groups.tolist())) == ["p1", "p2"] and data.group_kind == "subject"
    with pytest.raises(DataError, match="no column 'diagnosis'"):
        ECGManifest(str(tmp_path / "list.csv"), label_column="diagnosis", cache_dir=str(tmp_path / "cache"))
