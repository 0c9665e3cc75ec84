"""Reading NIfTI files and DICOM series through MONAI, and the CT intensity scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from omnissl.errors import DataError
from omnissl_ct.phantom import write_dicom_series, write_nifti
from omnissl_ct.preprocessing import PreprocessSettings, deterministic_transforms
from omnissl_ct.catalog import find_in_folder, read_list
from omnissl_ct.readers import Source, check_series_geometry


def _preprocess(path: Path, **settings) -> dict:
    return deterministic_transforms(PreprocessSettings(**settings))({"image": str(path)})


def test_nifti_and_dicom_series_of_one_phantom_load_identically(tmp_path, ct_small_phantom):
    write_nifti(ct_small_phantom, tmp_path / "p.nii.gz")
    write_dicom_series(ct_small_phantom, tmp_path / "series")
    nifti = _preprocess(tmp_path / "p.nii.gz", spacing=None)
    dicom = _preprocess(tmp_path / "series", spacing=None)
    assert nifti["image"].shape == dicom["image"].shape
    np.testing.assert_allclose(nifti["image"].numpy(), dicom["image"].numpy(), atol=1e-6)
    np.testing.assert_allclose(nifti["spacing"].numpy(), [1.0, 1.5, 2.5], atol=1e-5)
    np.testing.assert_allclose(dicom["spacing"].numpy(), [1.0, 1.5, 2.5], atol=1e-5)


def test_series_is_ordered_by_position_not_instance_number(tmp_path, ct_small_phantom):
    paths = write_dicom_series(ct_small_phantom, tmp_path / "series")
    numbers = np.random.default_rng(0).permutation(len(paths)) + 1
    for path, number in zip(paths, numbers):  # scramble instance numbers, keep positions
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(number)
        ds.save_as(path)
    write_nifti(ct_small_phantom, tmp_path / "p.nii.gz")
    dicom = _preprocess(tmp_path / "series", spacing=None)
    nifti = _preprocess(tmp_path / "p.nii.gz", spacing=None)
    np.testing.assert_allclose(dicom["image"].numpy(), nifti["image"].numpy(), atol=1e-6)


def test_hounsfield_window_on_real_ct_small():
    """CT_small.dcm (a real CT slice shipped with pydicom): MONAI applies the rescale to HU,
    and the window maps [-1000, 1000] HU linearly to [0, 1]."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = pydicom.pixels.apply_rescale(ds.pixel_array, ds).astype(np.float64)  # (rows, columns)
    from monai.data import PydicomReader
    from monai.transforms import LoadImage, ScaleIntensityRange

    loaded = LoadImage(reader=PydicomReader(), image_only=True)(path)  # (columns, rows): MONAI swaps i/j
    np.testing.assert_allclose(loaded.numpy(), hu.T, atol=1e-3)
    settings = PreprocessSettings()
    scaled = ScaleIntensityRange(*settings.hu_window, 0.0, 1.0, clip=True)(loaded).numpy()
    np.testing.assert_allclose(scaled, np.clip((hu.T + 1000.0) / 2000.0, 0, 1), atol=1e-6)
    assert hu.min() < 0 < hu.max()  # the file really holds air-to-tissue HU, not raw stored values


def test_discover_finds_nifti_files_and_series_folders(ct_phantom_folder):
    sources = [entry.source for entry in find_in_folder(str(ct_phantom_folder)).entries]
    assert sorted((s.path.name, s.kind) for s in sources) == [
        ("p0.nii.gz", "nifti"), ("p1.nii.gz", "nifti"), ("p2.nii.gz", "nifti"), ("series", "dicom")]


def test_discover_reads_a_list_file(ct_phantom_folder):
    listing = ct_phantom_folder / "list.txt"
    listing.write_text("# volumes\np1.nii.gz\nseries  # a DICOM series\n")
    assert [e.source for e in read_list(str(listing)).entries] == [Source(ct_phantom_folder / "p1.nii.gz", "nifti"),
                                                Source(ct_phantom_folder / "series", "dicom")]


@pytest.mark.parametrize("positions, problem", [
    ([0.0, 2.0, 2.0, 4.0], "duplicated"),
    ([0.0, 2.0, 6.0, 8.0, 10.0], "missing"),
    ([0.0], "2-D image"),
])
def test_series_geometry_rejects_missing_and_duplicated_slices(positions, problem):
    with pytest.raises(DataError, match=problem):
        check_series_geometry(np.array(positions))


def test_settings_key_ignores_how_numbers_are_spelled():
    """YAML gives [2, 2, 2] or [2.0, 2.0, 2.0], lists or tuples: one cache folder for both."""
    ints = PreprocessSettings("ct", [2, 2, 2], [-160, 240], -500)
    floats = PreprocessSettings("ct", (2.0, 2.0, 2.0), (-160.0, 240.0), -500.0)
    assert ints.key() == floats.key()
    assert ints.key() != PreprocessSettings("ct", (2.0, 2.0, 3.0), (-160.0, 240.0)).key()
