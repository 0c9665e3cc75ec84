"""Faulty audio files (issue 12): non-finite or overflowing float WAVs and truncated WAVs.

The rule: a non-finite value never enters the feature cache or the data set's mean/std; the
file is skipped by name and counted (``skipped``), and ``strict`` makes it fatal. The
recordings are real speech: pyannote.audio's sample, cut into short float WAVs.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omnissl.errors import DataError
from omnissl_audio import AudioFolder
from omnissl_audio.cache import RunningMoments
from omnissl_audio.decode import load_audio, wav_frames
from omnissl_audio.speech import pyannote_sample

RATE = 16000
GOOD = ("a_speech.wav", "b_speech.wav", "c_speech.wav")  # sorted before "bad_*": the bad file sits between


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Three seconds of real two-speaker speech (pyannote.audio's sample), float32 at 16 kHz."""
    wav, _ = pyannote_sample()
    samples, rate = sf.read(wav, dtype="float32", start=RATE * 10, frames=RATE * 3)
    assert rate == RATE
    return samples


def good_folder(root: Path, speech: np.ndarray) -> Path:
    """One second of speech per file, written as 32-bit float WAVs."""
    root.mkdir(parents=True)
    for k, name in enumerate(GOOD):
        sf.write(root / name, speech[k * RATE:(k + 1) * RATE], RATE, subtype="FLOAT")
    return root


def load_warned(root: Path, cache: str, **options: object) -> tuple[AudioFolder, str]:
    """The data set and the text of every warning its construction gave."""
    with pytest.warns(UserWarning) as caught:
        data = AudioFolder(str(root), num_mel_bins=64, cache_dir=cache, **options)
    return data, " ".join(str(w.message) for w in caught)


def assert_cache_finite(data: AudioFolder) -> None:
    """Every stored frame and both statistics on disk are finite numbers (no NaN/Infinity in the JSON)."""
    frames = np.fromfile(data.cache.folder / "features.f16", dtype=np.float16)
    assert frames.size == int(data.cache.offsets[-1]) * 64 and np.isfinite(frames).all()
    stats = json.loads((data.cache.folder / "stats.json").read_text(),
                       parse_constant=lambda token: pytest.fail(f"stats.json holds {token}"))
    assert math.isfinite(stats["mean"]) and math.isfinite(stats["std"]) and stats["std"] > 0


def bad_samples(kind: str, speech: np.ndarray) -> tuple[np.ndarray, str]:
    clip = speech[:RATE].copy()
    if kind == "nan":
        clip[RATE // 2] = np.nan
        return clip, "FLOAT"
    if kind == "inf":
        clip[100:110] = np.inf
        return clip, "FLOAT"
    if kind == "loud":  # finite in the file, but the power spectrum overflows float32
        return (clip / np.abs(clip).max() * 1e38).astype(np.float32), "FLOAT"
    if kind == "double_overflow":  # finite 64-bit samples that are infinite once read as float32
        return clip.astype(np.float64) * 1e300, "DOUBLE"
    raise ValueError(kind)


@pytest.mark.parametrize("frontend", ["kaldi_fbank", "melspectrogram"])
@pytest.mark.parametrize("kind", ["nan", "inf", "loud", "double_overflow"])
def test_non_finite_or_overflowing_float_wav_is_skipped_and_never_reaches_the_statistics(
        tmp_path: Path, speech: np.ndarray, kind: str, frontend: str) -> None:
    reference = AudioFolder(str(good_folder(tmp_path / "good", speech)), num_mel_bins=64, frontend=frontend,
                            cache_dir=str(tmp_path / "cache"))
    root = good_folder(tmp_path / "mixed", speech)
    samples, subtype = bad_samples(kind, speech)
    sf.write(root / "bad_float.wav", samples, RATE, subtype=subtype)
    data, warned = load_warned(root, str(tmp_path / "cache"), frontend=frontend)
    assert len(data) == 3 and [Path(c.path).name for c in data.clips] == list(GOOD)
    assert [Path(where).name for where, _ in data.skipped] == ["bad_float.wav"]
    reason = data.skipped[0][1]
    assert ("NaN or infinite" in reason) if kind in ("nan", "inf", "double_overflow") else ("not finite" in reason)
    assert "bad_float.wav" in warned and "skipped 1 of 4 clips" in warned
    # The statistics are those of the good files alone, and finite; so is every cached frame.
    assert data.mean == reference.mean and data.std == reference.std
    assert math.isfinite(data.mean) and math.isfinite(data.std)
    assert all(np.isfinite(data[i]["features"]).all() for i in range(len(data)))
    assert_cache_finite(data)
    with pytest.raises(DataError, match="bad_float.wav"):
        AudioFolder(str(root), num_mel_bins=64, frontend=frontend, cache_dir=str(tmp_path / "strict"), strict=True)


def test_truncated_wav_is_skipped_by_name(tmp_path: Path, speech: np.ndarray) -> None:
    wav, _ = pyannote_sample()  # a real 30 s WAV (SoX/ffmpeg header with a LIST chunk)
    whole = wav.read_bytes()
    root = good_folder(tmp_path / "mixed", speech)
    cut = root / "bad_cut.wav"
    cut.write_bytes(whole[:len(whole) // 3])
    assert wav_frames(wav) == (30 * RATE, 30 * RATE)
    declared, held = wav_frames(cut)
    assert declared == 30 * RATE and held < declared / 3 + 1
    assert sf.info(str(cut)).frames == held  # libsndfile opens it as a shorter clip, without a word
    data, warned = load_warned(root, str(tmp_path / "cache"))
    assert len(data) == 3 and [Path(where).name for where, _ in data.skipped] == ["bad_cut.wav"]
    assert "truncated: the WAV header declares 480000 frames (30.00 s)" in data.skipped[0][1]
    assert "bad_cut.wav" in warned and "skipped 1 of 4 clips" in warned
    assert_cache_finite(data)
    with pytest.raises(DataError, match="bad_cut.wav: truncated"):
        AudioFolder(str(root), num_mel_bins=64, cache_dir=str(tmp_path / "strict"), strict=True)


def test_complete_wavs_are_not_mistaken_for_truncated_ones(tmp_path: Path, speech: np.ndarray) -> None:
    # A streaming encoder's "unknown length" data size, and bytes after the data chunk, are both fine.
    path = tmp_path / "stream.wav"
    sf.write(path, speech[:RATE], RATE, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    raw[data_at + 4:data_at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    assert wav_frames(path) is None
    assert load_audio(path, RATE).shape == (RATE,)
    padded = tmp_path / "trailing.wav"
    sf.write(padded, speech[:RATE], RATE, subtype="PCM_16")
    padded.write_bytes(padded.read_bytes() + b"\x00" * 1000)
    declared, held = wav_frames(padded)
    assert declared == RATE <= held
    assert load_audio(padded, RATE).shape == (RATE,)
    flac = tmp_path / "a.flac"
    sf.write(flac, speech[:RATE], RATE)
    assert wav_frames(flac) is None


def test_running_moments_are_float64_exact_and_refuse_non_finite_values() -> None:
    rng = np.random.default_rng(0)
    chunks = [(rng.standard_normal((n, 8)) * 0.01 + 1e4).astype(np.float32) for n in (5, 300, 1, 77)]
    moments = RunningMoments()
    for chunk in chunks:
        moments.add(chunk)
    everything = np.concatenate(chunks).astype(np.float64)
    mean, std = moments.mean_std()
    assert mean == pytest.approx(everything.mean(), rel=1e-12) and std == pytest.approx(everything.std(), rel=1e-9)
    with pytest.raises(ValueError, match="non-finite"):
        moments.add(np.array([1.0, np.nan], dtype=np.float32))
    assert moments.mean_std() == (mean, std)  # the refused array left no trace
    assert RunningMoments().mean_std() == (0.0, 1.0)


def test_a_skipped_file_is_reported_again_when_the_cache_is_opened_warm(tmp_path: Path, speech: np.ndarray) -> None:
    root = good_folder(tmp_path / "mixed", speech)
    samples, _ = bad_samples("nan", speech)
    sf.write(root / "bad_nan.wav", samples, RATE, subtype="FLOAT")
    cold, _ = load_warned(root, str(tmp_path / "cache"))
    warm, warned = load_warned(root, str(tmp_path / "cache"))
    assert warm.cache.folder == cold.cache.folder and warm.skipped == cold.skipped
    assert "bad_nan.wav" in warned and "NaN or infinite" in warned


@pytest.mark.parametrize("mean, std", [(float("nan"), 4.0), (-4.0, float("inf")), (-4.0, 0.0)])
def test_fixed_normalisation_must_be_finite(tmp_path: Path, speech: np.ndarray, mean: float, std: float) -> None:
    root = good_folder(tmp_path / "good", speech)
    with pytest.raises(DataError, match="must be finite numbers and data.std positive"):
        AudioFolder(str(root), num_mel_bins=64, mean=mean, std=std, cache_dir=str(tmp_path / "cache"))
