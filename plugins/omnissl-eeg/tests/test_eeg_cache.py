"""The window cache: a warm second pass opens no raw file; settings and content changes invalidate it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import omnissl.cache as core_cache
import omnissl_eeg.cache as cache_module
import omnissl_eeg.datasets as datasets
from omnissl_eeg import EEGFolder

SETTINGS = dict(notch=None, l_freq=1.0, h_freq=None, window_seconds=2.0, reject=None)
real_hash = core_cache.file_digest


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


def test_eeg_cache_follows_companion_files(eeg_raw, write_recording, tmp_path: Path):
    """A BrainVision recording rewritten with other samples but the same header (its .vhdr and
    .vmrk unchanged, only .eeg differs) gets new windows, not the cached old ones."""
    path = write_recording(eeg_raw, tmp_path / "data" / "rec.vhdr")
    before = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)[0]["signal"]
    header = path.read_bytes()
    reversed_ = eeg_raw.copy()
    reversed_._data = reversed_._data[:, ::-1].copy()  # same channels, length and range; other samples
    write_recording(reversed_, path)
    assert path.read_bytes() == header  # the header alone cannot tell
    after = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)[0]["signal"]
    assert not np.allclose(after, before)


def test_eeg_warm_start_reads_no_file_until_one_changes(eeg_raw, write_recording, tmp_path: Path, monkeypatch):
    path = write_recording(eeg_raw, tmp_path / "data" / "rec.vhdr")
    EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert (tmp_path / "cache" / "index.json").is_file()
    hashed = []
    monkeypatch.setattr(core_cache, "file_digest", lambda p: hashed.append(p.name) or real_hash(p))
    real_names = cache_module._brainvision_files
    monkeypatch.setattr(cache_module, "_brainvision_files", lambda p: hashed.append(p.name) or real_names(p))

    def refuse(*args, **kwargs):
        raise AssertionError("a raw file was opened although the cache is warm")

    monkeypatch.setattr(datasets, "read_recording", refuse)
    warm = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert hashed == [] and len(warm) > 0  # three files (.vhdr, .eeg, .vmrk), none read
    os.utime(path.with_suffix(".eeg"))  # touched, same content: hashed again, same key, no preprocessing
    EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert hashed == ["rec.eeg"]


def test_eeg_bids_side_file_edit_refreshes_the_cache(eeg_raw, write_recording, tmp_path: Path):
    """Marking a channel bad in a BIDS channels.tsv changes the windows at the next start."""
    import warnings

    import mne_bids

    root = tmp_path / "bids"
    bids_path = mne_bids.BIDSPath(subject="01", task="rest", datatype="eeg", root=root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mne_bids.write_raw_bids(eeg_raw, bids_path, format="BrainVision", allow_preload=True, verbose="error")
    first = EEGFolder(str(root), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert "T8" in first.recordings[0].channels
    channels = next((root / "sub-01" / "eeg").glob("*_channels.tsv"))
    rows = [line.split("\t") for line in channels.read_text().splitlines()]
    status = rows[0].index("status")
    for row in rows[1:]:
        if row[0] == "T8":
            row[status] = "bad"
    channels.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    with pytest.warns(UserWarning, match=r"T8 \(marked bad in the recording\)"):
        second = EEGFolder(str(root), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert "T8" not in second.recordings[0].channels


def test_eeg_companion_files_by_format(tmp_path: Path):
    from omnissl_eeg.cache import WindowCache
    from omnissl_eeg.datasets import settings_from

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("rec.eeg", "rec.vmrk", "renamed.dat", "rec_raw.fif", "rec_raw-1.fif", "rec_raw-2.fif.gz",
                 "other.edf", "sub.set", "sub.fdt", "sub-01_channels.tsv", "sub-01_eeg.json"):
        (folder / name).write_bytes(b"x")
    (folder / "rec.vhdr").write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\n"
                                     "DataFile=renamed.dat\nMarkerFile=rec.vmrk\n")
    cache = WindowCache(tmp_path / "cache", settings_from(["eeg"], None, None, None, 200.0, None, 2.0, None, None,
                                                          "drop"))
    def names(path: str, bids: bool = False) -> list[str]:
        return [p.name for p in cache.companions(folder / path, bids)]

    assert names("rec.vhdr") == ["rec.eeg", "rec.vmrk", "renamed.dat"]  # same stem, and what the header names
    assert names("rec_raw.fif") == ["rec_raw-1.fif", "rec_raw-2.fif.gz"]  # split parts
    assert names("sub.set") == ["sub.fdt"]
    assert names("other.edf") == []
    assert names("other.edf", bids=True) == ["sub-01_channels.tsv", "sub-01_eeg.json"]
