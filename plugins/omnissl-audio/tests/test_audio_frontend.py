"""Decoding, mixdown, resampling and the log-mel front ends, on real recordings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torchaudio.compliance import kaldi

from omnissl_audio import AudioFolder, FrontEnd
from omnissl_audio.decode import load_audio
from omnissl_audio.speech import pyannote_sample


def test_cached_features_match_torchaudio_kaldi_fbank(alsa_files: list[Path], tmp_path: Path,
                                                      audio_cache: str) -> None:
    """AudioMAE's recipe computed by hand (48 kHz file -> 16 kHz -> 128-bin fbank) equals the cache."""
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(alsa_files[0], folder / alsa_files[0].name)
    data = AudioFolder(str(folder), cache_dir=audio_cache)
    samples, rate = sf.read(alsa_files[0], dtype="float32")
    assert rate == 48000
    waveform = torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000)
    expected = kaldi.fbank((waveform - waveform.mean())[None], htk_compat=True, sample_frequency=16000,
                           use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0,
                           frame_shift=10, frame_length=25).numpy()
    cached = data[0]["features"] * data.std + data.mean  # undo the data set's normalisation
    assert cached.shape == expected.shape == (expected.shape[0], 128)
    np.testing.assert_allclose(cached, expected, atol=1e-2, rtol=2e-3)  # float16 storage


def test_melspectrogram_front_end_matches_torchaudio(alsa_files: list[Path]) -> None:
    waveform = load_audio(alsa_files[1], 16000)
    features = FrontEnd(kind="melspectrogram", num_mel_bins=64)(waveform)
    spec = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=64)(waveform)
    assert features.shape == (waveform.numel() // 160 + 1, 64)
    torch.testing.assert_close(features, (spec + 1e-6).log().T)


def test_resampling_keeps_pitch_and_duration(tmp_path: Path) -> None:
    rate, seconds, tone = 44100, 0.5, 1000.0
    t = np.arange(int(rate * seconds)) / rate
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * tone * t), rate, subtype="FLOAT")
    waveform = load_audio(path, 16000)
    assert waveform.numel() == 8000  # 0.5 s at 16 kHz
    spectrum = torch.fft.rfft(waveform).abs()
    assert abs(int(spectrum.argmax()) * 16000 / waveform.numel() - tone) <= 2.0
    assert abs(float(waveform.abs().max()) - 0.5) < 0.01  # amplitude kept


def test_stereo_is_mixed_to_the_mean_of_its_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    left, right = rng.uniform(-0.5, 0.5, 16000), rng.uniform(-0.5, 0.5, 16000)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 16000).numpy(), (left + right) / 2, atol=1e-6)


def test_sections_are_read_by_seconds() -> None:
    wav, _ = pyannote_sample()
    whole = load_audio(wav, 16000)
    part = load_audio(wav, 16000, start=6.69, end=7.12)
    assert part.numel() == round(7.12 * 16000) - round(6.69 * 16000)
    torch.testing.assert_close(part, whole[round(6.69 * 16000):round(7.12 * 16000)])


def test_flac_and_ogg_read_like_the_wav(tmp_path: Path, audio_cache: str) -> None:
    """pyannote.audio's real speech re-encoded as FLAC (lossless) and OGG/Vorbis (lossy)."""
    wav, _ = pyannote_sample()
    speech, rate = sf.read(wav, frames=3 * 16000, dtype="float32")
    for fmt in ("wav", "flac", "ogg"):
        (tmp_path / "speech" / fmt).mkdir(parents=True)
        sf.write(tmp_path / "speech" / fmt / f"speech.{fmt}", speech, rate)
    data = AudioFolder(str(tmp_path / "speech"), num_mel_bins=64, cache_dir=audio_cache)
    assert data.classes == ["flac", "ogg", "wav"] and len(data) == 3
    flac, ogg, pcm = (data[i]["features"] for i in range(3))
    assert flac.shape == ogg.shape == pcm.shape == (298, 64)
    np.testing.assert_allclose(flac, pcm, atol=2e-3)  # FLAC and WAV hold the same 16-bit samples
    assert np.corrcoef(ogg.ravel(), pcm.ravel())[0, 1] > 0.95
