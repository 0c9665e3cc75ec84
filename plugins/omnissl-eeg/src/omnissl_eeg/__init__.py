"""EEG and MEG for omnissl: read any montage through MNE, tokenise one token per channel per time patch."""

from omnissl_eeg.datasets import EEGFolder, EEGManifest, EEGRecordings, WindowDataset
from omnissl_eeg.modality import EEGModality
from omnissl_eeg.preprocessing import Preprocessing, Windows, preprocess
from omnissl_eeg.uea import UEAEEG

__version__ = "0.1.0"
__all__ = ["EEGModality", "EEGFolder", "EEGManifest", "EEGRecordings", "UEAEEG", "WindowDataset", "Preprocessing",
           "Windows", "preprocess"]
