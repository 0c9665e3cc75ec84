"""ECG for omnissl: WFDB, EDF/BDF and numpy records of any lead set, one token per lead per time patch.

The names below are imported on first access (PEP 562): omnissl imports this package before
``omnissl_ecg.plugin`` whenever it lists plugins or recipes, so it must not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"ECGModality": "omnissl_ecg.modality", "ECGFolder": "omnissl_ecg.datasets",
         "ECGManifest": "omnissl_ecg.datasets", "ECGWindows": "omnissl_ecg.datasets",
         "ECGExamples": "omnissl_ecg.examples", "Preprocessing": "omnissl_ecg.preprocessing",
         "preprocess": "omnissl_ecg.preprocessing", "read_record": "omnissl_ecg.readers"}

if TYPE_CHECKING:
    from omnissl_ecg.datasets import ECGFolder, ECGManifest, ECGWindows
    from omnissl_ecg.examples import ECGExamples
    from omnissl_ecg.modality import ECGModality
    from omnissl_ecg.preprocessing import Preprocessing, preprocess
    from omnissl_ecg.readers import read_record

__version__ = "0.1.0"
__all__ = ["ECGModality", "ECGFolder", "ECGManifest", "ECGWindows", "ECGExamples", "Preprocessing", "preprocess",
           "read_record"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
