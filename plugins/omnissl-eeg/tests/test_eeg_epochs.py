"""Epochs files (issue 13, item 1): a folder of MNE-written epochs gives one sample per epoch, labelled
by its event (through event_id), cropped to tmin/tmax; a found line says what was read and what not;
and a cold cache prints that one line instead of MNE's line per file (item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import omnissl_eeg.datasets as datasets
from omnissl.errors import DataError
from omnissl_eeg import EEGFolder

# No filter, no resampling, no re-reference: samples equal the file's, in microvolts.
EXACT = dict(sfreq=128.0, l_freq=None, h_freq=None, notch=None, reference=None, reject=None)
EVENT_ID = {"left": 1, "right": 2, "rest": 3}


def _epochs(raw, count: int = 14):
    """Epochs from -0.2 to 0.8 s around events every 2 s, cycling left, right, rest."""
    import mne

    events = np.array([[128 + i * 256, 0, 1 + i % 3] for i in range(count)])
    return mne.Epochs(raw, events, EVENT_ID, tmin=-0.2, tmax=0.8, baseline=None, preload=True, verbose="error")


def _refuse_reading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a raw file was opened although the cache is warm")

    monkeypatch.setattr(datasets, "read_recording", refuse)


def test_eeg_epochs_file_gives_one_labelled_sample_per_epoch(eeg_raw, tmp_path: Path, capfd, monkeypatch):
    """A folder holding only trials-epo.fif used to fail with 'no recording under ...'."""
    (tmp_path / "data").mkdir()
    epochs = _epochs(eeg_raw)
    epochs.save(tmp_path / "data" / "trials-epo.fif", verbose="error")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **EXACT)
    assert len(data) == 14 and data.sample_kind == "epoch"  # window_seconds (4 s) is for continuous recordings
    assert data[0]["signal"].shape == (14, 129)  # -0.2 .. 0.8 s at 128 Hz, both ends included
    np.testing.assert_allclose(data[5]["signal"], epochs.get_data()[5] * 1e6, rtol=1e-5, atol=1e-4)
    assert data.classes == ["left", "rest", "right"]
    assert [data.classes[i] for i in data.labels] == [["left", "right", "rest"][i % 3] for i in range(14)]
    assert data.labels.dtype == np.int64
    assert data.group_kind == "recording" and set(data.groups) == {str(tmp_path / "data" / "trials-epo.fif")}
    assert data.summary() == {"files": 1, "recordings": 0, "epochs files": 1, "epochs": 14,
                              "epochs rejected (peak-to-peak)": 0}
    assert "eeg_folder: found 0 raw recordings and 1 epochs file under" in capfd.readouterr().err
    _refuse_reading(monkeypatch)  # warm: the same samples, labels and summary, no file opened
    warm = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **EXACT)
    assert warm.summary() == data.summary() and warm.labels.tolist() == data.labels.tolist()
    assert warm.sample_kind == "epoch"


def test_eeg_epochs_event_id_and_crop(eeg_raw, tmp_path: Path):
    (tmp_path / "data").mkdir()
    epochs = _epochs(eeg_raw)
    epochs.save(tmp_path / "data" / "trials-epo.fif", verbose="error")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), tmin=0.0, tmax=0.5,
                     event_id={"left": "hand", "right": "hand"}, **EXACT)
    assert data[0]["signal"].shape == (14, 64)  # [0, 0.5) s at 128 Hz
    start = int(np.argmin(np.abs(epochs.times)))  # the event's sample
    np.testing.assert_allclose(data[4]["signal"], epochs.get_data()[4][:, start: start + 64] * 1e6,
                               rtol=1e-5, atol=1e-4)
    assert data.classes == ["hand"]  # both hands one class; rest is not in event_id: unlabelled
    expected = [0.0 if i % 3 < 2 else np.nan for i in range(14)]
    np.testing.assert_array_equal(data.labels, expected)
    with pytest.warns(UserWarning, match=r"trials-epo.fif: data.tmin/tmax \(-1, 0.5 s\) reach outside its epochs, "
                                         r"which span -0.203125 to 0.796875 s"):
        with pytest.raises(DataError, match="no readable recording"):
            EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), tmin=-1.0, tmax=0.5, **EXACT)


def test_eeg_epochs_under_any_name_and_other_fif_kinds_named(eeg_raw, write_recording, tmp_path: Path, capfd):
    """An epochs FIF not named -epo is still read as epochs; an evoked (-ave) file is named as not read,
    and a folder holding only such files says so instead of 'no recording'."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    epochs = _epochs(eeg_raw, count=6)
    with pytest.warns(RuntimeWarning, match="does not conform to MNE naming"):
        epochs.save(data_dir / "trials.fif", verbose="warning")
    epochs.average().save(data_dir / "trials-ave.fif", verbose="error")
    write_recording(eeg_raw, data_dir / "rest.edf")
    data = EEGFolder(str(data_dir), cache_dir=str(tmp_path / "cache"), window_seconds=2.0, **EXACT)
    assert len(data) == 15 + 6 and data.sample_kind == "window"  # a mixed folder: windows and epochs
    assert data.summary()["epochs files"] == 1 and data.summary()["epochs"] == 6
    assert data.summary()["recordings"] == 1 and data.summary()["windows"] == 15
    assert data.skipped == [(str(data_dir / "trials-ave.fif"), "not a recording: evoked responses: averaged epochs")]
    labels = data.labels  # auto: the epochs by event, the continuous recording unlabelled
    assert np.isnan(labels[:15]).all() and [data.classes[int(i)] for i in labels[15:]] == \
        ["left", "right", "rest"] * 2
    err = capfd.readouterr().err
    assert ("eeg_folder: found 1 raw recording and 1 epochs file under" in err
            and "not read, 1 file of other kinds: trials-ave.fif (evoked responses: averaged epochs)" in err)
    only = tmp_path / "only"
    only.mkdir()
    (data_dir / "trials-ave.fif").rename(only / "trials-ave.fif")
    with pytest.raises(DataError, match=r"no recording under .*only \(looked for .*\*-epo.fif\)\); found only files "
                                        r"of other kinds: trials-ave.fif \(evoked responses"):
        EEGFolder(str(only), cache_dir=str(tmp_path / "cache"))


def test_eeg_cold_cache_prints_one_line_not_one_per_file(eeg_raw, write_recording, tmp_path: Path, capfd, caplog):
    """A cold cache used to print MNE's 'Reading 0 ... 3839 = 0.000 ... 29.992 secs...' once per file."""
    import logging

    for i in range(3):
        write_recording(eeg_raw, tmp_path / "data" / f"rec{i}_raw.fif")
        write_recording(eeg_raw, tmp_path / "data" / f"rec{i}.edf")
    _epochs(eeg_raw, count=4).save(tmp_path / "data" / "trials-epo.fif", verbose="error")
    with caplog.at_level(logging.INFO):
        data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), window_seconds=2.0, notch=None)
    captured = capfd.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("mne")]
    assert not any("Reading" in line for line in lines + logged), lines + logged
    assert len(data.sources) == 7
    assert lines == [f"eeg_folder: found 6 raw recordings and 1 epochs file under {tmp_path / 'data'}; "
                     f"7 preprocessed, 0 from the cache in {tmp_path / 'cache'}"]
