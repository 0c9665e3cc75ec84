"""Faults of real files (issue 12, item 14): one bad recording is skipped by name, with the reason,
never aborting the folder nor vanishing silently; a truncated EDF is not half-read; the window cache
follows every byte of a file and rebuilds a damaged entry; no NaN/inf window reaches the cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import omnissl_eeg.datasets as datasets
from omnissl.errors import DataError
from omnissl_eeg import EEGFolder

SETTINGS = dict(notch=None, l_freq=None, h_freq=None, window_seconds=2.0, reject=None)


def _folder(root: Path, cache: Path, **settings) -> EEGFolder:
    return EEGFolder(str(root), cache_dir=str(cache), **{**SETTINGS, **settings})


def _skipped(data: EEGFolder) -> dict[str, str]:
    return {Path(source).name: reason for source, reason in data.skipped}


def _refuse_reading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a raw file was opened although the cache is warm")

    monkeypatch.setattr(datasets, "read_recording", refuse)


def test_eeg_flat_and_microscaled_recordings_are_skipped_by_name(eeg_raw, write_recording, tmp_path: Path):
    """All channels flat (an empty recording), or every value 1e6 too small (volts written where the
    file's unit says microvolts): MNE cannot drop every channel and used to raise, aborting the folder."""
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    flat = eeg_raw.copy()
    flat._data[:] = 0.0
    write_recording(flat, tmp_path / "data" / "b_flat.fif")
    tiny = eeg_raw.copy()
    tiny._data *= 1e-6
    write_recording(tiny, tmp_path / "data" / "c_volts_as_microvolts.edf")
    with pytest.warns(UserWarning, match="skipping .*b_flat.fif"), \
            pytest.warns(UserWarning, match="skipping .*c_volts_as_microvolts.edf"):
        data = _folder(tmp_path / "data", tmp_path / "cache")
    assert [Path(s).name for s in data.sources] == ["a_good.fif"] and len(data) == 15
    skipped = _skipped(data)
    assert sorted(skipped) == ["b_flat.fif", "c_volts_as_microvolts.edf"]
    assert "every channel is unusable (14 flat)" in skipped["b_flat.fif"]
    assert "constant" in skipped["b_flat.fif"]
    assert "every channel is unusable (14 flat)" in skipped["c_volts_as_microvolts.edf"]
    assert "wrong unit (about 1e6 too small" in skipped["c_volts_as_microvolts.edf"]
    with pytest.raises(DataError, match=r"b_flat.fif.*every channel is unusable.*data.strict=false"):
        _folder(tmp_path / "data", tmp_path / "cache", strict=True)


@pytest.mark.parametrize("kept", [0.5, 0.999])  # cut inside the data buffers; only the tag directory lost
def test_eeg_truncated_fif_is_skipped_by_name(eeg_raw, write_recording, tmp_path: Path, kept: float):
    """A FIF cut short used to open (lazily) and then raise a bare ValueError while loading, aborting
    the folder; MNE's warning that the file is damaged was silenced."""
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    whole = write_recording(eeg_raw, tmp_path / "data" / "b_cut.fif").read_bytes()
    (tmp_path / "data" / "b_cut.fif").write_bytes(whole[: int(len(whole) * kept)])
    with pytest.warns(UserWarning, match="skipping .*b_cut.fif"):
        data = _folder(tmp_path / "data", tmp_path / "cache")
    assert [Path(s).name for s in data.sources] == ["a_good.fif"]
    assert list(_skipped(data)) == ["b_cut.fif"]
    assert "damaged (truncated or corrupted)" in _skipped(data)["b_cut.fif"]
    with pytest.raises(DataError, match="b_cut.fif.*damaged"):
        _folder(tmp_path / "data", tmp_path / "cache", strict=True)


@pytest.mark.parametrize("fmt", ["edf", "bdf"])
def test_eeg_truncated_edf_is_skipped_not_half_read(eeg_raw, write_recording, tmp_path: Path, fmt: str):
    """An EDF/BDF whose data end before the records its header declares: MNE warned (silenced) and
    read the first half as if it were the whole recording."""
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    path = write_recording(eeg_raw, tmp_path / "data" / f"b_cut.{fmt}")
    whole = path.read_bytes()
    header = int(whole[184:192])
    path.write_bytes(whole[: header + (len(whole) - header) // 2 + 7])  # mid-record, as a killed copy leaves it
    with pytest.warns(UserWarning, match=f"skipping .*b_cut.{fmt}"):
        data = _folder(tmp_path / "data", tmp_path / "cache")
    assert [Path(s).name for s in data.sources] == ["a_good.fif"]
    reason = _skipped(data)[f"b_cut.{fmt}"]
    assert re.search(r"truncated: its header declares 30 data records \(30 s\) but the file holds 15 \(15 s", reason)
    with pytest.raises(DataError, match=f"b_cut.{fmt}.*truncated"):
        _folder(tmp_path / "data", tmp_path / "cache", strict=True)


def test_eeg_edf_with_unset_record_count_is_skipped(eeg_raw, write_recording, tmp_path: Path):
    """A header whose record count is -1 (a recording never closed): MNE inferred it from the file size
    without a word; whether the file is complete cannot be told, so it is named, not read."""
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    path = write_recording(eeg_raw, tmp_path / "data" / "b_open.edf")
    whole = bytearray(path.read_bytes())
    whole[236:244] = b"-1      "
    path.write_bytes(bytes(whole))
    with pytest.warns(UserWarning, match="skipping .*b_open.edf"):
        data = _folder(tmp_path / "data", tmp_path / "cache")
    assert "number of data records unset (-1" in _skipped(data)["b_open.edf"]
    assert "holds 30 records (30 s)" in _skipped(data)["b_open.edf"]


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_eeg_every_window_rejected_is_a_named_skip(eeg_raw, write_recording, tmp_path: Path, monkeypatch,
                                                   scale: float):
    """Units off by 1e3-1e6: every window exceeds the rejection limit. The recording used to vanish with
    no warning and no skipped entry; now the reason gives the limit, the typical peak-to-peak and the
    likely unit error, from a cold start and from the cache alike."""
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    loud = eeg_raw.copy()
    loud._data *= scale
    write_recording(loud, tmp_path / "data" / "b_millivolts.fif")
    settings = dict(reject={"eeg": 1000.0})
    with pytest.warns(UserWarning, match="skipping .*b_millivolts.fif: every window was rejected"):
        data = _folder(tmp_path / "data", tmp_path / "cache", **settings)
    assert [Path(s).name for s in data.sources] == ["a_good.fif"]
    reason = _skipped(data)["b_millivolts.fif"]
    assert "every window was rejected (15 of 15)" in reason
    assert "data.reject (eeg 1000 uV)" in reason
    good_ptp = float(np.median(np.ptp(data.recordings[0].data, axis=2)))  # uV, the same signal unscaled
    found = float(re.search(r"typical peak-to-peak found eeg ([0-9.e+]+) uV", reason).group(1))
    assert found == pytest.approx(scale * good_ptp, rel=0.01)
    power = int(round(np.log10(scale)))
    assert f"about 1e{power} too large" in reason and "unit problem" in reason
    _refuse_reading(monkeypatch)  # warm: the cached (empty) windows carry the same reason
    with pytest.warns(UserWarning, match="skipping .*b_millivolts.fif"):
        warm = _folder(tmp_path / "data", tmp_path / "cache", **settings)
    assert _skipped(warm) == {"b_millivolts.fif": reason}
    with pytest.raises(DataError, match="b_millivolts.fif.*every window was rejected"):
        _folder(tmp_path / "data", tmp_path / "cache", strict=True, **settings)


def test_eeg_recording_shorter_than_a_window_is_a_named_skip(eeg_raw, write_recording, tmp_path: Path):
    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    write_recording(eeg_raw.copy().crop(0, 1.5, include_tmax=False), tmp_path / "data" / "b_short.fif")
    with pytest.warns(UserWarning, match="skipping .*b_short.fif"):
        data = _folder(tmp_path / "data", tmp_path / "cache")
    assert _skipped(data) == {"b_short.fif": "no window: the recording (1.5 s) is shorter than one window of 2 s "
                                             "(data.window_seconds)"}


def test_eeg_cache_follows_a_same_size_edit_in_the_middle(eeg_raw, write_recording, tmp_path: Path):
    """One sample changed in the middle of a 4 MB FIF, size kept and mtime restored: the key used to hash
    only the first and last MiB, and the cache served the old windows."""
    import mne

    signal = np.tile(eeg_raw.get_data(), (1, 20))  # 600 s, 14 channels: a 4.3 MB FIF
    sample = signal.shape[1] // 2 + 37
    signal[4, sample] = float(np.float32(1.2345e-4))  # exactly representable in the FIF's float32
    raw = mne.io.RawArray(signal, eeg_raw.info.copy(), verbose="error")
    path = write_recording(raw, tmp_path / "data" / "rec.fif")
    settings = dict(sfreq=128.0, reference=None)
    before = _folder(tmp_path / "data", tmp_path / "cache", **settings)
    window = sample // 256
    assert before[window]["signal"][4, sample % 256] == pytest.approx(123.45, rel=1e-4)

    blob = bytearray(path.read_bytes())
    marker = np.array([1.2345e-4], dtype=">f4").tobytes()
    assert blob.count(marker) == 1
    offset = blob.index(marker)
    assert (1 << 20) < offset < len(blob) - (1 << 20)  # neither end sees it
    stat = path.stat()
    blob[offset: offset + 4] = np.array([-1.2345e-4], dtype=">f4").tobytes()
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p / rsync -t leave it
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns

    after = _folder(tmp_path / "data", tmp_path / "cache", **settings)
    assert after[window]["signal"][4, sample % 256] == pytest.approx(-123.45, rel=1e-4)
    fresh = _folder(tmp_path / "data", tmp_path / "fresh_cache", **settings)
    np.testing.assert_array_equal(after.recordings[0].data, fresh.recordings[0].data)
    untouched = [w for w in range(len(after)) if w != window]
    np.testing.assert_array_equal(after.recordings[0].data[untouched], before.recordings[0].data[untouched])


@pytest.mark.parametrize("damage", ["npy cut in the data", "npy cut in its header", "json cut"])
def test_eeg_damaged_cache_entry_is_rebuilt(eeg_raw, write_recording, tmp_path: Path, damage: str):
    """A cache entry cut short (full disk, killed copy) used to raise at every start; now it is deleted
    with a warning and rebuilt, equal to a fresh build."""
    write_recording(eeg_raw, tmp_path / "data" / "rec.edf")
    first = _folder(tmp_path / "data", tmp_path / "cache")
    expected = np.array(first.recordings[0].data)
    (npy,) = (tmp_path / "cache").glob("*.npy")
    target = npy.with_suffix(".json") if damage == "json cut" else npy
    whole = target.read_bytes()
    target.write_bytes(whole[: {"npy cut in the data": len(whole) // 2, "npy cut in its header": 40,
                                "json cut": len(whole) - 10}[damage]])
    del first
    with pytest.warns(UserWarning, match=r"cache entry .*\.npy of .*rec.edf is damaged.*preprocessing it again"):
        rebuilt = _folder(tmp_path / "data", tmp_path / "cache")
    np.testing.assert_array_equal(rebuilt.recordings[0].data, expected)
    assert rebuilt.skipped == []
    assert npy.read_bytes() and np.load(npy).shape == expected.shape  # whole again, at the same key
    assert isinstance(rebuilt.recordings[0].data, np.memmap)


def test_eeg_non_finite_windows_never_reach_the_cache(eeg_raw, write_recording, tmp_path: Path):
    """A corrupt sample of 1e35 V is finite in the file, but 1e41 uV after scaling overflows float32 to
    inf: with rejection off that window used to be cached. NaN samples drop their channel (as before)."""
    corrupt = eeg_raw.copy()
    corrupt._data[3, 5 * 128] = 1e35
    write_recording(corrupt, tmp_path / "data" / "a_overflow.fif")
    holes = eeg_raw.copy()
    holes._data[7, 1000:1010] = np.nan
    write_recording(holes, tmp_path / "data" / "b_nan.fif")
    with pytest.warns(UserWarning, match=r"a_overflow.fif: dropped 1 window\(s\) holding NaN or infinite"), \
            pytest.warns(UserWarning, match=r"b_nan.fif: dropped channel\(s\) AF3 \(NaN or infinite samples\)"):
        data = _folder(tmp_path / "data", tmp_path / "cache", reference=None, sfreq=128.0)
    overflow, nan = data.recordings
    assert len(overflow.data) == 14 and overflow.report["nonfinite"] == 1  # the window 4-6 s is gone
    assert "AF3" not in nan.channels and len(nan.data) == 15
    for npy in (tmp_path / "cache").glob("*.npy"):
        assert np.isfinite(np.load(npy)).all(), npy
    # The windows kept are the recording's own, unchanged: the third is 6-8 s (4-6 s was dropped).
    np.testing.assert_allclose(overflow.data[2], eeg_raw.get_data()[:, 6 * 128: 8 * 128] * 1e6, rtol=1e-5,
                               atol=1e-3)
