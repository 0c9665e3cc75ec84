"""Issue 14 (and 9 for CT): CT and MR in one run, each volume with its own intensity handling,
and CSV manifests whose path, label, group and modality columns the recipe names."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from omnissl.errors import DataError, RecipeError
from omnissl_ct.datasets import CTVolumes, labels_from_cells
from omnissl_ct.phantom import affine_of, make_phantom, write_dicom_series, write_nifti


def _mr(rng: np.random.Generator) -> np.ndarray:
    """An MR-like volume in arbitrary scanner units: positive everywhere, a bright ellipsoid, noise."""
    grid = np.meshgrid(*(np.arange(20, dtype=np.float32) for _ in range(3)), indexing="ij")
    inside = sum(((g - 9.5) / 8) ** 2 for g in grid) <= 1
    return (150.0 + 600.0 * inside + rng.normal(0, 30, (20, 20, 20)).clip(-140, 140)).astype(np.float32)


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(8)
    root = tmp_path / "mixed"
    voxels = {}
    for name in ("ct1.nii.gz", "ct2.nii.gz", "sub/ct3.nii.gz"):
        phantom = make_phantom(rng, (20, 20, 20), (2.0, 2.0, 2.0))
        write_nifti(phantom, root / name)
        voxels[name] = np.round(phantom.hu)
    voxels["mr1.nii.gz"] = _mr(rng)
    nib.save(nib.Nifti1Image(voxels["mr1.nii.gz"], affine_of((2.0, 2.0, 2.0))), str(root / "mr1.nii.gz"))
    (root / "cohort.csv").write_text("file,diagnosis,patient,modality\n"
                                     "ct1.nii.gz,tumour,p1,CT\n"
                                     "mr1.nii.gz,healthy,p1,MR\n"
                                     "ct2.nii.gz,healthy,p2,ct\n"
                                     "sub/ct3.nii.gz,,,\n")
    return root, voxels


def test_manifest_mixes_ct_and_mr_with_named_columns(mixed, tmp_path):
    root, voxels = mixed
    dataset = CTVolumes(manifest=str(root / "cohort.csv"), path_column="file", label_column="diagnosis",
                        group_column="patient", modality_column="modality", crops_per_volume=2, spacing=[2.0, 2.0, 2.0],
                        cache_dir=str(tmp_path / "cache"))
    order = ["ct1.nii.gz", "ct2.nii.gz", "sub/ct3.nii.gz", "mr1.nii.gz"]  # CT volumes first, then MR
    assert [Path(dataset[2 * i]["path"]).relative_to(root).as_posix() for i in range(4)] == order
    assert dataset.classes == ["healthy", "tumour"] and dataset.task == "classification"
    np.testing.assert_array_equal(dataset.labels, [1, 1, 0, 0, np.nan, np.nan, 0, 0])
    assert dataset.groups.tolist() == ["p1", "p1", "p2", "p2", str(root / "sub/ct3.nii.gz"),
                                       str(root / "sub/ct3.nii.gz"), "p1", "p1"]  # a blank cell: the volume
    assert dataset.group_kind == "patient"
    assert dataset.summary() == {"files": 4, "crops per volume": 2, "CT volumes": 3, "MR volumes": 1}
    ct = dataset[0]["image"][0].numpy()  # the HU window
    np.testing.assert_allclose(ct, np.clip((voxels["ct1.nii.gz"] + 1000) / 2000, 0, 1), atol=1e-6)
    mr = dataset[6]["image"][0].numpy()  # the volume's own 0.5th-99.5th percentiles to [0, 1]
    low, high = np.percentile(voxels["mr1.nii.gz"], [0.5, 99.5])
    np.testing.assert_allclose(mr, np.clip((voxels["mr1.nii.gz"] - low) / (high - low), 0, 1), atol=1e-5)


def test_an_unknown_column_lists_the_columns_the_manifest_has(mixed, tmp_path):
    root, _ = mixed
    with pytest.raises(DataError, match=r"data.label_column is 'dx'.*\['file', 'diagnosis', 'patient', 'modality'\]"):
        CTVolumes(manifest=str(root / "cohort.csv"), path_column="file", label_column="dx", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"data.path_column is 'path'.*'file'"):
        CTVolumes(manifest=str(root / "cohort.csv"), cache_dir=str(tmp_path))
    with pytest.raises(RecipeError, match="data.group_column name columns of a CSV manifest"):
        CTVolumes(root=str(root), group_column="patient", cache_dir=str(tmp_path))


def test_a_modality_cell_other_than_ct_or_mr_skips_the_row_by_name(mixed, tmp_path):
    root, _ = mixed
    # with the byte-order mark a spreadsheet writes
    (root / "pet.csv").write_text("path,modality\nct1.nii.gz,CT\nmr1.nii.gz,PT\n", encoding="utf-8-sig")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CTVolumes(manifest=str(root / "pet.csv"), modality_column="modality", spacing=[2.0, 2.0, 2.0],
                            cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 1 and dataset.labels is None
    assert [(str(where), reason) for where, reason in dataset.skipped] == [
        (f"{root / 'pet.csv'}, line 3 (mr1.nii.gz)", "the 'modality' cell says 'PT'; only CT and MR volumes are read")]
    assert any("line 3 (mr1.nii.gz)" in str(w.message) for w in caught)


def _series(rng: np.random.Generator, folder: Path, modality: str) -> Path:
    write_dicom_series(make_phantom(rng, (20, 20, 12), (2.0, 2.0, 2.0)), folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality = modality
        ds.save_as(path)
    return folder


def test_intensity_auto_reads_the_dicom_modality_tag(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "auto"
    _series(rng, root / "ct_series", "CT")
    _series(rng, root / "mr_series", "MR")
    _series(rng, root / "pet_series", "PT")
    write_nifti(make_phantom(rng, (20, 20, 12), (2.0, 2.0, 2.0)), root / "loose.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = CTVolumes(root=str(root), intensity="auto", spacing=[2.0, 2.0, 2.0], cache_dir=str(tmp_path / "c"))
    assert [(v.source.path.name, v.intensity) for v in dataset.volumes] == [("ct_series", "ct"), ("mr_series", "mr")]
    reasons = {Path(where).name: reason for where, reason in dataset.skipped}
    assert sorted(reasons) == ["loose.nii.gz", "pet_series"]
    assert "a NIfTI file records no modality" in reasons["loose.nii.gz"]
    assert "data.intensity to ct or mr" in reasons["loose.nii.gz"]
    assert "DICOM Modality is 'PT'" in reasons["pet_series"]
    assert float(dataset[1]["image"].max()) == pytest.approx(1.0)  # MR: its 99.5th percentile is 1


def test_labels_from_manifest_cells():
    labels, classes, task = labels_from_cells(["2", "10", "2", "1"])
    assert classes == ["1", "2", "10"] and labels.tolist() == [1, 2, 1, 0] and task == "classification"
    labels, classes, task = labels_from_cells(["63.5", "", "71", "nan"])
    assert task == "regression" and classes == [] and np.isnan(labels[[1, 3]]).all() and labels[0] == 63.5
    assert labels_from_cells(["", ""])[0] is None
