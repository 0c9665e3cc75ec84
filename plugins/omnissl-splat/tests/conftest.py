"""Shared fixtures of the splat plugin's tests: a small generated data set on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnissl_splat.generate import generate_shapes


@pytest.fixture(scope="session")
def splat_shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 classes x 3 objects of 150-200 Gaussians, as 3DGS PLY files in class sub-folders."""
    return generate_shapes(tmp_path_factory.mktemp("splat-shapes"), per_class=3, num_gaussians=200, seed=1)
