"""EEG and MEG for omnissl: read any montage through MNE, tokenise one token per channel per time patch.

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_eeg.plugin``, which imports this package first) does not import MNE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"EEGFolder": "omnissl_eeg.datasets", "EEGManifest": "omnissl_eeg.datasets",
         "EEGRecordings": "omnissl_eeg.datasets", "WindowDataset": "omnissl_eeg.datasets",
         "EEGModality": "omnissl_eeg.modality", "Preprocessing": "omnissl_eeg.preprocessing",
         "Windows": "omnissl_eeg.preprocessing", "preprocess": "omnissl_eeg.preprocessing",
         "UEAEEG": "omnissl_eeg.uea"}

if TYPE_CHECKING:
    from omnissl_eeg.datasets import EEGFolder, EEGManifest, EEGRecordings, WindowDataset
    from omnissl_eeg.modality import EEGModality
    from omnissl_eeg.preprocessing import Preprocessing, Windows, preprocess
    from omnissl_eeg.uea import UEAEEG

__version__ = "0.1.0"
__all__ = ["EEGModality", "EEGFolder", "EEGManifest", "EEGRecordings", "UEAEEG", "WindowDataset", "Preprocessing",
           "Windows", "preprocess"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
