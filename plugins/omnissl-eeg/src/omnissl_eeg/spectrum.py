"""LaBraM's spectral target: the Fourier amplitude and phase of every patch.

Jiang et al. (ICLR 2024) train their tokenizer to predict each EEG patch's Fourier
amplitude and phase rather than its raw samples, which are dominated by noise at
high frequencies. Here the two halves are one target stream: log-amplitude scored by
squared error, phase scored by ``1 - cos`` of the angle error, so that predicting
``pi - eps`` for a true ``-pi + eps`` costs almost nothing (plain MSE on angles would
punish the wrap-around).
"""

from __future__ import annotations

import torch
from torch import Tensor


def patch_spectrum(values: Tensor) -> Tensor:
    """(N, P) patches -> (N, 2F) ``[log1p(|X|), angle(X)]`` with X the real FFT, F = P // 2 + 1."""
    spectrum = torch.fft.rfft(values.float(), dim=-1)  # [N, F]
    return torch.cat([torch.log1p(spectrum.abs()), spectrum.angle()], dim=-1)


def patches_from_spectrum(spectrum: Tensor, length: int) -> Tensor:
    """Inverse of :func:`patch_spectrum`: (..., 2F) -> (..., length) patches (for plots)."""
    half = spectrum.shape[-1] // 2
    amplitude = torch.expm1(spectrum[..., :half].float()).clamp(min=0)
    phase = spectrum[..., half:].float()
    return torch.fft.irfft(torch.polar(amplitude, phase), n=length, dim=-1)


def spectral_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Per-token loss (M, 2F) x2 -> (M,): amplitude MSE + phase ``1 - cos`` error, each averaged over F."""
    half = target.shape[-1] // 2
    pred, target = pred.float(), target.float()
    amplitude = (pred[:, :half] - target[:, :half]).pow(2).mean(dim=-1)
    phase = (1.0 - torch.cos(pred[:, half:] - target[:, half:])).mean(dim=-1)
    return amplitude + phase
