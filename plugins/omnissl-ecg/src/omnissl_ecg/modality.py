"""The ECG modality: one token per lead per time patch, placed by the lead's direction and time.

A window of C leads and T samples becomes C * (T // patch) tokens, lead-major (token ``c * P + p``).
``coords`` are the lead's direction in the standard layout (a unit vector, Fourier-encoded:
:mod:`omnissl_ecg.leads`) and the patch index (a grid, sin-cos encoded); ``kinds`` is the lead's
identity (I, II, ..., V6, X, Y, Z, or "other" for a lead of unknown direction), which stays
visible when the token is hidden. So a single-lead wearable record, a 3-lead Holter, an 8-lead
and a 12-lead ECG are the same kind of input, and batch together (the core pads). Lead-wise
patch tokens are ST-MEM's (Na et al., ICLR 2024) and the EEG plugin's; ECG-JEPA (Weimann &
Conrad, 2024) embeds all leads of a time patch as one token instead (docs/ecg.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from omnissl import CoordGroup, Modality, TokenBatch, Tokens, TokenSpec
from omnissl.errors import DataError, RecipeError
from omnissl.recipe import Range
from omnissl_ecg.leads import DIRECTIONS, KIND_VOCAB

# Frequency bins of the classical baseline: log power in 1 Hz bins from 0.5 to 40.5 Hz.
BASELINE_BINS = np.arange(0.5, 41.0, 1.0)


class ECGModality(Modality):
    """ECG windows as lead x time-patch tokens.

    Samples are dicts with ``signal`` (C, T) float millivolts, ``leads`` (C,) int identities
    (index into :data:`omnissl_ecg.leads.LEADS`, or OTHER) and ``sfreq``: what this plugin's
    data sets return.

    Args:
        sfreq: sampling rate the data were resampled to (checked against every sample).
        patch_seconds: patch length in seconds (ECG-JEPA: 25 samples at 500 Hz, 0.05 s).
        amplitude_scale: values are divided by it (1: millivolts, the usual ECG scale).
        direction_scale: length scale of the lead-direction Fourier features (unit vectors:
            leads 30 degrees apart are 0.52 apart).
    """

    name = "ecg"

    def __init__(self, sfreq: Annotated[float, Range(gt=0)] = 500.0,
                 patch_seconds: Annotated[float, Range(gt=0)] = 0.05,
                 amplitude_scale: Annotated[float, Range(gt=0)] = 1.0,
                 direction_scale: Annotated[float, Range(gt=0)] = 0.5):
        self.patch = int(round(sfreq * patch_seconds))
        if self.patch < 2:
            raise RecipeError(f"modality.patch_seconds={patch_seconds} at {sfreq} Hz gives {self.patch} samples; "
                              f"a patch needs at least 2")
        self.sfreq = float(sfreq)
        self.amplitude_scale = float(amplitude_scale)
        self.direction_scale = float(direction_scale)

    def spec(self) -> TokenSpec:
        return TokenSpec(value_dim=self.patch,
                         coords=(CoordGroup("continuous", 3, self.direction_scale), CoordGroup("grid", 1)),
                         kind_vocab=(KIND_VOCAB,))

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        """(C, T) signal -> C * (T // patch) tokens, lead-major; the tail shorter than a patch is
        dropped. No augmentation: ``rng`` is unused."""
        source = sample.get("source", "sample")
        if abs(float(sample["sfreq"]) - self.sfreq) > 1e-6:
            raise DataError(f"{source}: data at {sample['sfreq']} Hz but modality.sfreq is {self.sfreq}; set "
                            f"data.sfreq and modality.sfreq to the same rate")
        signal = np.asarray(sample["signal"], dtype=np.float32)  # [C, T] mV
        leads = np.asarray(sample["leads"], dtype=np.int64)  # [C]
        channels, length = signal.shape
        patches = length // self.patch
        if patches < 1:
            raise DataError(f"{source}: a window of {length} samples is shorter than one patch ({self.patch}); "
                            f"lengthen data.window_seconds or shorten modality.patch_seconds")
        values = torch.from_numpy(signal[:, : patches * self.patch] / self.amplitude_scale)
        values = values.reshape(channels * patches, self.patch)  # [C * P, patch]
        coords = np.empty((channels * patches, 4), dtype=np.float32)
        coords[:, :3] = np.repeat(DIRECTIONS[leads], patches, axis=0)
        coords[:, 3] = np.tile(np.arange(patches, dtype=np.float32), channels)
        kinds = torch.from_numpy(np.repeat(leads, patches)[:, None])  # [C * P, 1]
        meta = {"leads": leads.tolist(), "num_leads": channels, "num_patches": patches}
        return Tokens(values=values, coords=torch.from_numpy(coords), kinds=kinds, meta=meta)

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Log power (Welch) in 1 Hz bins from 0.5 to 40.5 Hz, averaged over the leads: (40,).
        Records with any number of leads get the same features; the heart rate shows as the
        spectrum's fundamental and harmonics."""
        from scipy.signal import welch

        signal = np.asarray(sample["signal"], dtype=np.float64)
        freqs, power = welch(signal, fs=self.sfreq, nperseg=min(signal.shape[1], int(4 * self.sfreq)))
        mean = power.mean(axis=0)
        bins = [mean[(freqs >= lo) & (freqs < hi)] for lo, hi in zip(BASELINE_BINS[:-1], BASELINE_BINS[1:])]
        return np.log(np.array([b.mean() if b.size else 0.0 for b in bins]) + 1e-12)

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        from omnissl_ecg.viz import plot_leads

        return plot_leads(batch, hidden, predictions["values"], path, self.patch, self.sfreq, self.amplitude_scale)
