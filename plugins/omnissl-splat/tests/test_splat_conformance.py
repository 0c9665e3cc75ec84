"""The core's conformance checks (omnissl.testing) on generated 3DGS shapes."""

from omnissl.testing import ModalityConformance
from omnissl_splat.datasets import SplatFolder
from omnissl_splat.generate import generate_shapes
from omnissl_splat.modality import SplatModality


class TestSplatConformance(ModalityConformance):
    def make_modality(self):
        return SplatModality(num_points=128, num_groups=8, group_size=16, embed_hidden=16)

    def make_dataset(self, tmp_path):
        root = generate_shapes(tmp_path / "shapes", per_class=1, num_gaussians=200, seed=2)
        return SplatFolder(str(root), cache_dir=str(tmp_path / "cache"))
