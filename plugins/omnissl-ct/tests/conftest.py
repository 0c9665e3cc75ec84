"""Fixtures of the omnissl-ct tests: small phantoms written as real NIfTI files and DICOM series."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from omnissl_ct.phantom import Phantom, make_phantom, write_dicom_series, write_nifti


@pytest.fixture(autouse=True)
def _quiet_monai_optional_backends():
    # MONAI announces optional GPU decoders it cannot find; not what these tests look at.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
        yield


@pytest.fixture
def ct_small_phantom() -> Phantom:
    return make_phantom(np.random.default_rng(7), shape=(24, 20, 12), spacing=(1.0, 1.5, 2.5))


@pytest.fixture
def ct_phantom_folder(tmp_path: Path) -> Path:
    """Three 24³ phantoms as NIfTI and one as a DICOM series, under one folder."""
    rng = np.random.default_rng(3)
    root = tmp_path / "volumes"
    for i in range(3):
        write_nifti(make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0)), root / f"p{i}.nii.gz")
    write_dicom_series(make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0)), root / "series")
    return root
