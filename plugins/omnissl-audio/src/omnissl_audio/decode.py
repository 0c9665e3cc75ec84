"""Decode audio files to mono waveforms at one sample rate (soundfile + torchaudio).

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis without ffmpeg; torchaudio 2.11
no longer ships I/O backends, so it is used only for resampling.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

EXTENSIONS = (".wav", ".flac", ".ogg")
UNKNOWN_LENGTH = 0xFFFFFFFF  # data-chunk size written by streaming encoders (ffmpeg/sox to a pipe): not a truncation


class BadAudio(ValueError):
    """A file that decodes but cannot be used as it is: truncated, or NaN/infinite samples.

    The message says what is wrong; the feature cache skips the clip by name with it.
    """


def wav_frames(path: str | Path) -> tuple[int, int] | None:
    """(frames the data chunk declares, whole frames the file holds) of a RIFF/RIFX/RF64 WAV file.

    libsndfile quietly clamps a data chunk that runs past the end of the file to what is there,
    so a WAV cut short (an interrupted copy or download) opens and decodes as a shorter clip;
    comparing the header with the file size is the only way to tell. Returns None for files that
    are not WAV, have no ``fmt``/``data`` chunk before the end, or were written by a streaming
    encoder that could not know the length (data size 0xFFFFFFFF without an RF64 ``ds64`` chunk).
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64") or head[8:12] != b"WAVE":
            return None
        order = ">" if head[:4] == b"RIFX" else "<"
        size = os.fstat(handle.fileno()).st_size
        block_align, ds64_data, pos = 0, None, 12
        try:
            while pos + 8 <= size:
                handle.seek(pos)
                chunk, length = struct.unpack(order + "4sI", handle.read(8))
                body = pos + 8
                if chunk == b"ds64" and length >= 16:
                    ds64_data = struct.unpack(order + "QQ", handle.read(16))[1]
                elif chunk == b"fmt " and length >= 16:
                    block_align = struct.unpack(order + "HHIIH", handle.read(14))[4]
                elif chunk == b"data":
                    declared = ds64_data if length == UNKNOWN_LENGTH and ds64_data is not None else length
                    if declared == UNKNOWN_LENGTH or block_align <= 0:
                        return None
                    return declared // block_align, (size - body) // block_align
                pos = body + length + (length & 1)  # chunks are padded to an even size
        except struct.error:  # a chunk header cut short: libsndfile decides whether the file opens at all
            return None
    return None


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
        (time,) float32 waveform in [-1, 1] at ``sample_rate``, every sample finite.
    Raises:
        soundfile.LibsndfileError / RuntimeError when the file cannot be decoded, and
        :class:`BadAudio` when it is truncated (the header declares more frames than the file
        holds) or holds NaN/infinite samples; callers turn these into warnings or
        :class:`omnissl.DataError`.
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        rate = handle.samplerate
        frames = wav_frames(path)
        if frames is not None and frames[1] < frames[0]:
            # Skipped, not used for what is there: a cut file is a broken copy (re-fetch it), its
            # clip would be silently shorter than the recording (labels and sections refer to the
            # whole of it), and the cache is keyed by content, so the repaired file is read again.
            raise BadAudio(f"truncated: the WAV header declares {frames[0]} frames ({frames[0] / rate:.2f} s) "
                           f"but the file holds {frames[1]} ({frames[1] / rate:.2f} s)")
        first = int(round((start or 0.0) * rate))
        last = handle.frames if end is None else min(handle.frames, int(round(end * rate)))
        if first > 0:
            handle.seek(first)
        wanted, declared = max(0, last - first), handle.frames
        samples = handle.read(wanted, dtype="float32", always_2d=True)  # [frames, channels]
    if len(samples) < wanted:  # other formats whose decoder stops early instead of raising
        raise BadAudio(f"truncated: the header declares {declared} frames, only {first + len(samples)} "
                       f"could be read")
    finite = np.isfinite(samples)
    if not finite.all():
        raise BadAudio(f"{int((~finite).sum())} of {samples.size} samples are NaN or infinite")
    waveform = resample(torch.from_numpy(np.ascontiguousarray(mix_to_mono(samples))), rate, sample_rate)
    if not torch.isfinite(waveform).all():  # finite samples near the float32 limit overflow when mixed or resampled
        raise BadAudio(f"samples too loud to process: peak {float(np.abs(samples).max()):.3g}, expected within [-1, 1]")
    return waveform
