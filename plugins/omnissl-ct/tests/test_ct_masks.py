"""Issue 14: a folder of images and label masks: masks are recognised by name, never trained
on, reported once, and paired with their image."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_ct.catalog import find_in_folder, is_mask
from omnissl_ct.datasets import CTVolumes
from omnissl_ct.phantom import affine_of, make_phantom, write_nifti


def _write_mask(hu: np.ndarray, path: Path) -> Path:
    """A uint8 label mask as segmentation tools write it: 0 background, 1 body, 2 the bright lesion."""
    labels = (hu > -500).astype(np.uint8) + (hu > 100).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, affine_of((2.0, 2.0, 2.0))), str(path))
    return path


@pytest.fixture
def images_and_masks(tmp_path: Path) -> Path:
    """Five images and seven masks in the layouts users have: masks next to their images, nnU-Net's
    imagesTr/labelsTr, TotalSegmentator's per-structure masks, and a mask without an image."""
    rng = np.random.default_rng(4)
    root = tmp_path / "data"

    def image(path: Path) -> np.ndarray:
        phantom = make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0))
        write_nifti(phantom, path)
        return phantom.hu

    hu = image(root / "case1.nii.gz")
    _write_mask(hu, root / "case1_seg.nii.gz")
    hu = image(root / "case2.nii.gz")
    _write_mask(hu, root / "case2_label.nii.gz")
    _write_mask(hu, root / "case2-mask_liver.nii.gz")
    hu = image(root / "Dataset001_Liver" / "imagesTr" / "liver_003_0000.nii.gz")
    _write_mask(hu, root / "Dataset001_Liver" / "labelsTr" / "liver_003.nii.gz")
    hu = image(root / "s0001" / "ct.nii.gz")
    _write_mask(hu, root / "s0001" / "segmentations" / "liver.nii.gz")
    _write_mask(hu, root / "s0001" / "segmentations" / "spleen.nii.gz")
    image(root / "case3.nii.gz")
    _write_mask(hu, root / "orphan_gt.nii.gz")
    return root


def test_masks_are_not_trained_on_reported_once_and_paired(images_and_masks, tmp_path):
    root = images_and_masks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CTVolumes(root=str(root), spacing=[2.0, 2.0, 2.0], cache_dir=str(tmp_path / "cache"))
    messages = [str(w.message) for w in caught if "mask" in str(w.message)]
    assert messages == [f"found 5 images and 7 masks under {root}; masks are not trained on "
                        f"(4 images paired with their masks)"]
    samples = {Path(dataset[i]["path"]).relative_to(root).as_posix(): dataset[i] for i in range(len(dataset))}
    assert sorted(samples) == ["Dataset001_Liver/imagesTr/liver_003_0000.nii.gz", "case1.nii.gz", "case2.nii.gz",
                               "case3.nii.gz", "s0001/ct.nii.gz"]
    masks = {name: [Path(m).relative_to(root).as_posix() for m in s["masks"]] for name, s in samples.items()}
    assert masks == {"Dataset001_Liver/imagesTr/liver_003_0000.nii.gz": ["Dataset001_Liver/labelsTr/liver_003.nii.gz"],
                     "case1.nii.gz": ["case1_seg.nii.gz"],
                     "case2.nii.gz": ["case2-mask_liver.nii.gz", "case2_label.nii.gz"],
                     "case3.nii.gz": [],
                     "s0001/ct.nii.gz": ["s0001/segmentations/liver.nii.gz", "s0001/segmentations/spleen.nii.gz"]}
    assert dataset.summary() == {"files": 5, "crops per volume": 1, "masks (not trained on)": 7,
                                 "volumes paired with a mask": 4}


def test_mask_names(tmp_path):
    root = tmp_path
    for name in ("a_seg.nii.gz", "a_label.nii", "a_labels_2.nii.gz", "a_mask.nii.gz", "A_Mask1.nii.gz",
                 "a_gt.nii.gz", "a-seg.nii.gz", "a_segmentation.nii.gz", "labelsTr/a.nii.gz", "x/segmentations/b.nii"):
        assert is_mask(root / name, root), name
    for name in ("a.nii.gz", "a_0000.nii.gz", "second.nii.gz", "a_segment3d.nii.gz", "a_gtv.nii.gz",
                 "imagesTr/a_0000.nii.gz", "labels.nii.gz", "masked_ct.nii.gz"):
        assert not is_mask(root / name, root), name


def test_a_folder_of_masks_only_says_so(tmp_path):
    root = tmp_path / "labelsTr"
    _write_mask(np.full((12, 12, 12), 40.0, np.float32), root / "case_001.nii.gz")
    catalog = find_in_folder(str(tmp_path))
    assert catalog.entries == [] and catalog.masks == [root / "case_001.nii.gz"]
    with pytest.raises(DataError, match="all label masks"):
        CTVolumes(root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
