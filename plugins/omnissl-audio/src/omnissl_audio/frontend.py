"""Log-mel front ends: Kaldi-compatible filter banks (AudioMAE, AST) or torchaudio's MelSpectrogram.

Gong et al., "AST: Audio Spectrogram Transformer" (2021) and Huang et al., "Masked
Autoencoders that Listen" (AudioMAE, 2022) feed a ViT 128 Kaldi filter-bank bins per
25 ms frame, one frame every 10 ms, computed by ``torchaudio.compliance.kaldi.fbank``
on the waveform with its mean removed; that is the default here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from omnissl.errors import RecipeError

FrontEndKind = Literal["kaldi_fbank", "melspectrogram"]
LOG_FLOOR = 1e-6  # MelSpectrogram power floor before the log (Kaldi's fbank floors at float eps itself)


@dataclass(frozen=True)
class FrontEnd:
    """Waveform -> log-mel features, with every setting that changes the result.

    Args:
        sample_rate: waveform rate in Hz (files are resampled to it).
        num_mel_bins: mel filters (AudioMAE: 128).
        frame_length_ms: analysis window (25 ms).
        frame_shift_ms: hop between frames (10 ms).
        kind: ``"kaldi_fbank"`` (AudioMAE: Hanning window, HTK-compatible, no dither so that
            cached features are deterministic) or ``"melspectrogram"`` (torchaudio's STFT-based
            ``MelSpectrogram``, natural log of power + 1e-6).
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    kind: FrontEndKind = "kaldi_fbank"

    def __post_init__(self) -> None:
        if self.kind not in ("kaldi_fbank", "melspectrogram"):
            raise RecipeError(f"data.frontend must be 'kaldi_fbank' or 'melspectrogram', got {self.kind!r}")
        if self.sample_rate <= 0 or self.num_mel_bins <= 0 or self.frame_shift_ms <= 0:
            raise RecipeError(f"data: sample_rate, num_mel_bins and frame_shift_ms must be positive, got "
                              f"{self.sample_rate}, {self.num_mel_bins}, {self.frame_shift_ms}")

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_length_ms / 1000))

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_shift_ms / 1000))

    def key(self) -> str:
        """A short hash of the settings, part of every cache key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def __call__(self, waveform: Tensor) -> Tensor:
        """(time,) float waveform in [-1, 1] -> (frames, num_mel_bins) float32 log-mel energies."""
        waveform = waveform.float()
        if self.kind == "kaldi_fbank":
            from torchaudio.compliance import kaldi

            return kaldi.fbank((waveform - waveform.mean())[None], htk_compat=True,
                               sample_frequency=float(self.sample_rate), use_energy=False,
                               window_type="hanning", num_mel_bins=self.num_mel_bins, dither=0.0,
                               frame_length=self.frame_length_ms, frame_shift=self.frame_shift_ms)
        return self._melspectrogram()(waveform).clamp_min(0).add(LOG_FLOOR).log().T.contiguous()

    def _melspectrogram(self) -> torch.nn.Module:
        import torchaudio

        return torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=self.window_samples, win_length=self.window_samples,
            hop_length=self.hop_samples, n_mels=self.num_mel_bins, power=2.0)
