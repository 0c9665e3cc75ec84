"""The window cache: a warm second pass opens no raw file; settings and content changes invalidate it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import omnissl_eeg.datasets as datasets
from omnissl_eeg import EEGFolder

SETTINGS = dict(notch=None, l_freq=1.0, h_freq=None, window_seconds=2.0, reject=None)


def test_eeg_warm_cache_never_opens_raw_files(eeg_raw, write_recording, tmp_path: Path, monkeypatch):
    write_recording(eeg_raw, tmp_path / "data" / "rec.edf")
    first = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)

    def refuse(*args, **kwargs):
        raise AssertionError("a raw file was opened although the cache is warm")

    monkeypatch.setattr(datasets, "read_recording", refuse)
    second = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert isinstance(second.recordings[0].data, np.memmap)
    np.testing.assert_array_equal(first[3]["signal"], second[3]["signal"])
    with pytest.raises(AssertionError, match="cache is warm"):  # other settings: a new key, so a re-read
        EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **{**SETTINGS, "l_freq": 2.0})


def test_eeg_cache_follows_file_content(eeg_raw, write_recording, tmp_path: Path):
    path = write_recording(eeg_raw, tmp_path / "data" / "rec.fif")
    before = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)[0]["signal"]
    changed = eeg_raw.copy()
    changed._data *= 2.0
    write_recording(changed, path)  # same name and size, new content
    after = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)[0]["signal"]
    np.testing.assert_allclose(after, 2.0 * before, rtol=1e-4, atol=1e-3)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_eeg_cached_dataset_pickles_as_file_names(eeg_raw, write_recording, tmp_path: Path):
    """DataLoader workers started by spawn/forkserver receive the data set pickled: the memory
    maps travel as file names, not as copies of every window, and read the same windows."""
    import pickle

    write_recording(eeg_raw, tmp_path / "data" / "rec.edf")
    folder = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    folder.get_batch([0, 1])  # builds the cached views, which must not be pickled
    nbytes = folder.recordings[0].data.nbytes
    blob = pickle.dumps(folder)
    assert len(blob) < nbytes / 4, (len(blob), nbytes)
    copy = pickle.loads(blob)
    assert isinstance(copy.recordings[0].data, np.memmap)
    np.testing.assert_array_equal(copy.get_batch([1, 3])["signal"], folder.get_batch([1, 3])["signal"])
