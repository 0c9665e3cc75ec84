"""Every reader on real files: round trips through EDF/BDF/FIF/BrainVision/EEGLAB, pyedflib's own
EDF/BDF files, a BIDS tree, MEG in FIF, in-memory MNE objects and arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from omnissl_eeg import EEGFolder, EEGRecordings, Preprocessing, preprocess
from omnissl_eeg.readers import read_recording

SETTINGS = dict(notch=50.0, l_freq=0.5, h_freq=40.0, window_seconds=2.0, reject=None)


@pytest.mark.parametrize("suffix", [".edf", ".bdf", ".fif", ".vhdr", ".set"])
def test_eeg_format_round_trip(eeg_raw, write_recording, eyes_channels, tmp_path: Path, suffix: str):
    write_recording(eeg_raw, tmp_path / "data" / f"rec{suffix}")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert data.skipped == []
    sample = data[0]
    assert sample["signal"].shape == (14, 400)  # 14 channels x 2 s at the 200 Hz target rate
    assert sample["sfreq"] == 200.0
    assert sample["channels"] == eyes_channels
    assert len(data) == 15  # 30 s recording, 2 s windows, no overlap
    # units: microvolts (the source EEG has a 5-40 uV standard deviation after the 0.5-40 Hz band-pass)
    assert 2.0 < float(np.std(sample["signal"])) < 100.0
    assert np.all(np.abs(sample["positions"]) < 0.15) and np.all(np.linalg.norm(sample["positions"], axis=1) > 0.03)


@pytest.mark.parametrize("name, channels, sfreq", [("test_generator.edf", 11, 200.0),
                                                  ("test_generator.bdf", 5, 1000.0)])
def test_eeg_pyedflib_files(name: str, channels: int, sfreq: float):
    """Files written by EDFlib (another tool): MNE's reading agrees with pyedflib's, in microvolts."""
    import pyedflib

    path = Path(pyedflib.__file__).parent / "tests" / "data" / name
    raw = read_recording(path)
    assert raw.info["sfreq"] == sfreq and len(raw.ch_names) == channels
    # the generator's channels are test signals, not electrodes: give them 10-20 names to place them
    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Cz"][:channels]
    raw.rename_channels(dict(zip(raw.ch_names, names)))
    settings = Preprocessing(l_freq=None, h_freq=None, notch=None, sfreq=sfreq, reference=None,
                             window_seconds=10.0, reject=None)
    windows = preprocess(raw, settings, name)
    assert windows.data.shape[1:] == (channels, int(10 * sfreq))
    with pyedflib.EdfReader(str(path)) as reader:
        assert reader.getPhysicalDimension(0).lower() == "uv"
        expected = reader.readSignal(0)[: int(10 * sfreq)]
    np.testing.assert_allclose(windows.data[0, 0], expected, atol=0.05 * np.ptp(expected) + 1e-3)


def test_eeg_meg_fif(meg_raw, write_recording, tmp_path: Path):
    write_recording(meg_raw, tmp_path / "meg" / "run_meg.fif")
    data = EEGFolder(str(tmp_path / "meg"), cache_dir=str(tmp_path / "cache"), notch=None, l_freq=None,
                     h_freq=None, sfreq=250.0, window_seconds=4.0, reject=None)
    sample = data[1]
    assert sample["signal"].shape == (36, 1000)
    assert np.bincount(sample["types"], minlength=3).tolist() == [0, 12, 24]  # no eeg, 12 mag, 24 grad
    # units: femtotesla for magnetometers (x 1e15), femtotesla per centimetre for gradiometers (x 1e13)
    scale = np.where(sample["types"] == 1, 1e15, 1e13)[:, None]
    np.testing.assert_allclose(sample["signal"], meg_raw.get_data()[:, 1000:2000] * scale, rtol=1e-4, atol=1e-3)


def test_eeg_bids_tree(eeg_raw, write_recording, tmp_path: Path):
    import mne_bids

    source = write_recording(eeg_raw, tmp_path / "source.fif")
    raw = read_recording(source)
    root = tmp_path / "bids"
    for subject in ("01", "02"):
        path = mne_bids.BIDSPath(subject=subject, task="rest", datatype="eeg", root=root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True, overwrite=True,
                                    verbose="error")
    (root / "sub-01" / "notes.edf").write_bytes(b"")  # not a BIDS eeg file: ignored
    data = EEGFolder(str(root), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert len(data.sources) == 2 and all("_eeg.vhdr" in s for s in data.sources)
    assert data[0]["signal"].shape == (14, 400)


def test_eeg_in_memory_raw_epochs_and_arrays(eeg_raw, eyes_channels):
    import mne

    epochs = mne.make_fixed_length_epochs(eeg_raw, duration=3.0, verbose="error")
    array = eeg_raw.get_data()
    cases = array[:, :1280].reshape(14, 10, 128).transpose(1, 0, 2)  # [10, 14, 128]
    data = EEGRecordings([eeg_raw, epochs, (array, eyes_channels, 128.0), (cases, eyes_channels, 128.0)],
                         labels=[None, None, None, np.arange(10) % 2], window_seconds=None, notch=None,
                         l_freq=None, h_freq=None, reject=None)
    lengths = [w.data.shape for w in data.recordings]
    assert lengths[0] == (1, 14, int(round(eeg_raw.n_times / 128 * 200)))
    assert lengths[1][:2] == (10, 14) and lengths[3][:2] == (10, 14)
    assert data.recordings[3].labels.tolist() == [0, 1] * 5
    assert np.allclose(data.recordings[0].data, data.recordings[2].data)  # Raw and its array agree
