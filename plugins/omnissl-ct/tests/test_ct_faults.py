"""Issue 12: a volume with no foreground (all air, or everything below ``foreground_hu``) is
skipped by name with the reason, never cached as an empty sample."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from omnissl.errors import DataError
from omnissl_ct.datasets import CTVolumes
from omnissl_ct.phantom import affine_of


def _write(path: Path, hu: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(hu, affine_of((2.0, 2.0, 2.0))), str(path))
    return path


def _load(root: Path, cache: Path, **kwargs) -> tuple[CTVolumes, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CTVolumes(root=str(root), spacing=[2.0, 2.0, 2.0], cache_dir=str(cache), **kwargs)
    return dataset, [str(w.message) for w in caught]


def _cached_tensors(cache: Path) -> list[torch.Tensor]:
    return [torch.load(path, weights_only=True)["image"] for path in sorted(cache.rglob("*.pt"))]


def test_all_air_and_below_threshold_volumes_are_skipped_by_name(ct_phantom_folder: Path, tmp_path: Path) -> None:
    _write(ct_phantom_folder / "air.nii.gz", np.full((16, 16, 12), -1000, np.int16))
    _write(ct_phantom_folder / "lung_only.nii.gz", np.full((16, 16, 12), -700.0, np.float32))  # < -500 HU
    dataset, messages = _load(ct_phantom_folder, tmp_path / "cache")
    assert len(dataset) == 4
    assert sorted(path.name for path, _ in dataset.skipped) == ["air.nii.gz", "lung_only.nii.gz"]
    reasons = dict((path.name, reason) for path, reason in dataset.skipped)
    assert "no foreground" in reasons["air.nii.gz"] and "-500 HU" in reasons["air.nii.gz"]
    assert "brightest is -1000 HU" in reasons["air.nii.gz"]
    assert "brightest is -700 HU" in reasons["lung_only.nii.gz"]
    assert any("air.nii.gz" in m and "no foreground" in m for m in messages)
    assert any("skipped 2 of 6 volumes" in m for m in messages)
    for index in range(len(dataset)):  # what is served is the good volumes, none of them empty
        sample = dataset[index]
        assert Path(sample["path"]).name not in ("air.nii.gz", "lung_only.nii.gz")
        assert min(sample["image"].shape[1:]) > 0
    cached = _cached_tensors(tmp_path / "cache")
    assert len(cached) == 4 and all(t.numel() > 0 and bool(torch.isfinite(t).all()) for t in cached)


def test_one_dense_voxel_is_foreground_enough(tmp_path: Path) -> None:
    """The check is 'any voxel above the threshold', the crop's own rule: a small body is kept."""
    root = tmp_path / "vols"
    root.mkdir()
    hu = np.full((16, 16, 12), -1000, np.int16)
    hu[6:9, 6:9, 5:7] = 40
    _write(root / "small_body.nii.gz", hu)
    dataset, _ = _load(root, tmp_path / "cache")
    assert len(dataset) == 1 and dataset.skipped == []
    assert float(dataset[0]["image"].max()) > 0.5


def test_a_lower_foreground_threshold_keeps_the_lung_only_volume(tmp_path: Path) -> None:
    root = tmp_path / "vols"
    root.mkdir()
    _write(root / "lung_only.nii.gz", np.full((16, 16, 12), -700.0, np.float32))
    dataset, _ = _load(root, tmp_path / "cache", foreground_hu=-800.0)
    assert len(dataset) == 1 and dataset.skipped == []


def test_only_air_is_a_data_error_and_strict_names_the_file(ct_phantom_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "air_only"
    root.mkdir()
    _write(root / "air.nii.gz", np.full((16, 16, 12), -1024, np.int16))
    with pytest.raises(DataError, match=r"none of the 1 volumes.*air\.nii\.gz.*no foreground"):
        _load(root, tmp_path / "cache")
    _write(ct_phantom_folder / "air.nii.gz", np.full((16, 16, 12), -1000, np.int16))
    with pytest.raises(DataError, match=r"cannot use volume .*air\.nii\.gz.*no foreground"):
        _load(ct_phantom_folder, tmp_path / "cache2", strict=True)


def test_blank_mr_volume_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "mr"
    root.mkdir()
    _write(root / "blank.nii.gz", np.zeros((16, 16, 12), np.float32))
    mr = np.zeros((16, 16, 12), np.float32)
    mr[4:12, 4:12, 3:9] = np.random.default_rng(0).uniform(50, 150, (8, 8, 6))
    _write(root / "head.nii.gz", mr)
    dataset, messages = _load(root, tmp_path / "cache", intensity="mr")
    assert [path.name for path, _ in dataset.skipped] == ["blank.nii.gz"]
    assert "no foreground" in dataset.skipped[0][1] and "above the foreground threshold 0" in dataset.skipped[0][1]
    assert len(dataset) == 1 and bool(torch.isfinite(dataset[0]["image"]).all())
