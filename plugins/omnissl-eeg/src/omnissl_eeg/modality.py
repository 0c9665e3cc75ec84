"""The EEG/MEG modality: one token per channel per time patch, placed by sensor position and time.

Tokens follow LaBraM (Jiang et al., ICLR 2024: one token per channel per 1 s patch at
200 Hz) and BrainOmni (Xiao et al., 2025: sensors described by position and type, so
EEG and MEG of any montage share one model). ``coords`` are the sensor's (x, y, z) in
metres (continuous, Fourier-encoded) and the patch index (grid, sin-cos encoded);
``kinds`` is the sensor type (eeg / mag / grad), an identity that stays visible when
the token is hidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from omnissl import CoordGroup, Modality, TargetStream, TokenBatch, Tokens, TokenSpec
from omnissl.errors import DataError, RecipeError
from omnissl_eeg.sensors import SENSOR_TYPES
from omnissl_eeg.spectrum import patch_spectrum, spectral_loss

# Classical EEG bands in Hz (delta, theta, alpha, beta, low gamma) for the probe's baseline.
BANDS: tuple[tuple[float, float], ...] = ((1, 4), (4, 8), (8, 13), (13, 30), (30, 45))


class EEGModality(Modality):
    """EEG/MEG windows as channel x time-patch tokens.

    Samples are dicts with ``signal`` (C, T) float in field units (uV, fT, fT/cm),
    ``positions`` (C, 3) metres, ``types`` (C,) index into ``("eeg", "mag", "grad")``
    and ``sfreq``: what the data sets of this plugin return.

    Args:
        sfreq: sampling rate the data were resampled to (checked against every sample).
        patch_seconds: patch length in seconds (LaBraM, CBraMod: 1 s).
        amplitude_scale: values are divided by it (100: LaBraM's 0.1 mV units for EEG).
        target: ``"raw"`` (reconstruct the patch samples), ``"spectral"`` (Fourier amplitude and
            phase, as LaBraM) or ``"both"`` (two streams, each with its own loss).
        spectral_weight: weight of the spectral stream in the total loss.
        position_scale: length scale in metres of the sensor-position Fourier features.
    """

    name = "eeg"

    def __init__(self, sfreq: float = 200.0, patch_seconds: float = 1.0, amplitude_scale: float = 100.0,
                 target: str = "raw", spectral_weight: float = 1.0, position_scale: float = 0.05):
        if target not in ("raw", "spectral", "both"):
            raise RecipeError(f"modality.target must be raw, spectral or both, got {target!r}")
        self.patch = int(round(sfreq * patch_seconds))
        if self.patch < 2:
            raise RecipeError(f"modality.patch_seconds={patch_seconds} at {sfreq} Hz gives {self.patch} samples; "
                              f"a patch needs at least 2")
        self.sfreq = float(sfreq)
        self.amplitude_scale = float(amplitude_scale)
        self.target = target
        self.spectral_weight = float(spectral_weight)
        self.position_scale = float(position_scale)

    def spec(self) -> TokenSpec:
        return TokenSpec(value_dim=self.patch,
                         coords=(CoordGroup("continuous", 3, self.position_scale), CoordGroup("grid", 1)),
                         kind_vocab=(len(SENSOR_TYPES),))

    def target_streams(self) -> list[TargetStream]:
        streams = []
        if self.target in ("raw", "both"):
            streams.append(TargetStream("values"))
        if self.target in ("spectral", "both"):
            streams.append(TargetStream("spectrum", dim=2 * (self.patch // 2 + 1), loss=spectral_loss,
                                        weight=self.spectral_weight, normalize=False))
        return streams

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        """(C, T) signal -> C * (T // patch) tokens, channel-major (token ``c * P + p``).

        No augmentation: ``rng`` is unused (masking is the only randomness MAE needs).
        """
        if abs(float(sample["sfreq"]) - self.sfreq) > 1e-6:
            raise DataError(f"{sample.get('source', 'sample')}: data at {sample['sfreq']} Hz but modality.sfreq is "
                            f"{self.sfreq}; set data.sfreq and modality.sfreq to the same rate")
        signal = torch.as_tensor(np.asarray(sample["signal"], dtype=np.float32))  # [C, T]
        channels, length = signal.shape
        patches = length // self.patch
        if patches == 0:
            raise DataError(f"{sample.get('source', 'sample')}: a window of {length} samples is shorter than one "
                            f"patch ({self.patch}); lengthen data.window_seconds or shorten modality.patch_seconds")
        values = signal[:, : patches * self.patch].reshape(channels * patches, self.patch) / self.amplitude_scale
        positions = torch.as_tensor(np.asarray(sample["positions"], dtype=np.float32))  # [C, 3]
        time = torch.arange(patches, dtype=torch.float32).repeat(channels)[:, None]  # [C*P, 1]
        coords = torch.cat([positions.repeat_interleave(patches, dim=0), time], dim=1)  # [C*P, 4]
        kinds = torch.as_tensor(np.asarray(sample["types"], dtype=np.int64)).repeat_interleave(patches)[:, None]
        targets = {"spectrum": patch_spectrum(values)} if self.target in ("spectral", "both") else {}
        meta = {"channels": list(sample.get("channels", [])), "num_channels": channels, "num_patches": patches}
        return Tokens(values=values, coords=coords, kinds=kinds, targets=targets, meta=meta)

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Log band powers (Welch) of every channel in the classical delta..gamma bands: (C * 5,)."""
        from scipy.signal import welch

        signal = np.asarray(sample["signal"], dtype=np.float64)
        freqs, power = welch(signal, fs=self.sfreq, nperseg=min(signal.shape[1], int(2 * self.sfreq)))
        bands = [power[:, (freqs >= lo) & (freqs < hi)].mean(axis=1) for lo, hi in BANDS]
        return np.log(np.stack(bands, axis=1) + 1e-12).ravel()

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        from omnissl_eeg.viz import plot_traces

        return plot_traces(batch, hidden, predictions, path, self.patch, self.sfreq, self.amplitude_scale)
