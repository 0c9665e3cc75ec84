"""The core's conformance checks (omnissl.testing) on generated CT phantoms."""

from omnissl.testing import ModalityConformance
from omnissl_ct.datasets import CTPhantoms
from omnissl_ct.modality import CTModality


class TestCTConformance(ModalityConformance):
    def make_modality(self):
        return CTModality(crop_size=16, patch_size=8)

    def make_dataset(self, tmp_path):
        return CTPhantoms(n=4, shape=[24, 24, 24], real_volumes=False, cache_dir=str(tmp_path / "cache"))
