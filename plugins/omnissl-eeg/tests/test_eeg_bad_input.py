"""Bad input: broken files are skipped and counted, NaN/flat channels dropped and reported, unknown
channels dropped or fatal, and nothing readable is a clear DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_eeg import EEGFolder, EEGRecordings

SETTINGS = dict(notch=None, l_freq=None, h_freq=None, window_seconds=2.0, reject=None)


def test_eeg_truncated_edf_is_skipped_and_counted(eeg_raw, write_recording, tmp_path: Path):
    good = write_recording(eeg_raw, tmp_path / "data" / "a_good.edf")
    write_recording(eeg_raw, tmp_path / "data" / "c_good.fif")
    bad = tmp_path / "data" / "b_truncated.edf"
    bad.write_bytes(good.read_bytes()[:200])  # cut inside the header
    with pytest.warns(UserWarning, match="b_truncated.edf"):
        data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert [Path(s).name for s, _ in data.skipped] == ["b_truncated.edf"]
    assert [Path(s).name for s in data.sources] == ["a_good.edf", "c_good.fif"]
    with pytest.raises(DataError, match="b_truncated.edf"):
        EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), strict=True, **SETTINGS)


def test_eeg_nothing_readable_is_a_data_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no recording under"):
        EEGFolder(str(tmp_path / "empty"), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.edf").write_bytes(b"0       not an edf header")
    with pytest.warns(UserWarning, match="x.edf"), pytest.raises(DataError, match="no readable recording"):
        EEGFolder(str(tmp_path / "broken"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not a folder"):
        EEGFolder(str(tmp_path / "missing"))


def test_eeg_nan_and_flat_channels_are_dropped_and_reported(eeg_raw):
    raw = eeg_raw.copy()
    data = raw.get_data()
    data[2, 100:200] = np.nan
    data[5] = 0.0
    raw._data = data
    with pytest.warns(UserWarning, match=r"O2 \(NaN or infinite samples\), FC6 \(flat\)"):
        windows = EEGRecordings([raw], names=["raw"], **SETTINGS).recordings[0]
    assert windows.report["bad_channels"] == {"O2": "NaN or infinite samples", "FC6": "flat"}
    assert len(windows.channels) == 12 and np.isfinite(windows.data).all()


def test_eeg_channels_the_recording_marks_bad_are_dropped(eeg_raw, write_recording, tmp_path: Path):
    """A FIF's info["bads"] (and BIDS channels.tsv status, which MNE-BIDS turns into it) keep a
    broken channel out of the windows and out of the average reference."""
    raw = eeg_raw.copy()
    raw.info["bads"] = ["T8"]
    raw._data[raw.ch_names.index("T8")] *= 1000.0  # a broken electrode, as a rater would mark it
    write_recording(raw, tmp_path / "data" / "rec.fif")
    with pytest.warns(UserWarning, match=r"T8 \(marked bad in the recording\)"):
        data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), reference="average", **SETTINGS)
    windows = data.recordings[0]
    assert windows.report["bad_channels"] == {"T8": "marked bad in the recording"}
    assert "T8" not in windows.channels and len(windows.channels) == 13
    clean = EEGRecordings([eeg_raw.copy().drop_channels(["T8"])], names=["clean"], reference="average",
                          **SETTINGS).recordings[0]
    np.testing.assert_allclose(windows.data, clean.data, rtol=1e-4, atol=1e-3)  # the reference never saw it


def test_eeg_unknown_channel_dropped_or_fatal(eeg_raw):
    raw = eeg_raw.copy().rename_channels({"F7": "Xyz1"})
    with pytest.warns(UserWarning, match="item0: no position for channel.*Xyz1"):
        data = EEGRecordings([raw], **SETTINGS)
    assert "Xyz1" not in data.recordings[0].channels and len(data.recordings[0].channels) == 13
    with pytest.raises(DataError, match="Xyz1"):
        EEGRecordings([raw], unknown_channels="error", **SETTINGS)


def test_eeg_amplitude_rejection(eeg_raw):
    raw = eeg_raw.copy()
    raw._data[0, 300:310] += 5e-3  # a 5 mV artefact in the first 2 s window
    data = EEGRecordings([raw], **{**SETTINGS, "reject": {"eeg": 1000.0}})
    assert data.recordings[0].report["rejected"] == 1 and len(data) == 14
