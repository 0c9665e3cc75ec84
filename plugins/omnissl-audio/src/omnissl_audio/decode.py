"""Decode audio files to mono waveforms at one sample rate (soundfile + torchaudio).

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis without ffmpeg; torchaudio 2.11
no longer ships I/O backends, so it is used only for resampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

EXTENSIONS = (".wav", ".flac", ".ogg")


def mix_to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> (frames,): the mean of the channels."""
    return samples if samples.ndim == 1 else samples.mean(axis=1)


def resample(waveform: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """(..., time) at ``orig_rate`` -> (..., time * new_rate / orig_rate) with torchaudio's
    band-limited sinc interpolation (Hann window, 6 zero crossings)."""
    if orig_rate == new_rate:
        return waveform
    import torchaudio.functional as AF

    return AF.resample(waveform, orig_rate, new_rate)


def load_audio(path: str | Path, sample_rate: int, start: float | None = None,
               end: float | None = None) -> Tensor:
    """Read ``path`` (optionally only ``[start, end)`` seconds), mix to mono, resample.

    Args:
        path: a WAV, FLAC or OGG file.
        sample_rate: rate of the returned waveform in Hz.
        start: first second to read (None: from the beginning).
        end: second to stop at (None: to the end).
    Returns:
        (time,) float32 waveform in [-1, 1] at ``sample_rate``.
    Raises:
        soundfile.LibsndfileError / RuntimeError when the file cannot be decoded; callers
        turn these into warnings or :class:`omnissl.DataError`.
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        rate = handle.samplerate
        first = int(round((start or 0.0) * rate))
        last = handle.frames if end is None else min(handle.frames, int(round(end * rate)))
        if first > 0:
            handle.seek(first)
        samples = handle.read(max(0, last - first), dtype="float32", always_2d=True)  # [frames, channels]
    waveform = torch.from_numpy(np.ascontiguousarray(mix_to_mono(samples)))
    return resample(waveform, rate, sample_rate)
