"""Volume data sets: bad input is skipped, warned about and counted; the cache is reused."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_ct.datasets import CTPhantoms, CTVolumes
from omnissl_ct.phantom import LESIONS, affine_of, make_phantom, write_nifti


def _volumes(root: Path, cache: Path, **kwargs) -> tuple[CTVolumes, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CTVolumes(root=str(root), spacing=[2.0, 2.0, 2.0], cache_dir=str(cache), **kwargs)
    return dataset, [str(w.message) for w in caught]


def test_good_volumes_load_with_spacing_and_path(ct_phantom_folder, tmp_path):
    dataset, messages = _volumes(ct_phantom_folder, tmp_path / "cache")
    assert len(dataset) == 4 and dataset.skipped == []
    sample = dataset[3]
    assert sample["image"].ndim == 4 and sample["image"].shape[0] == 1
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["spacing"].tolist() == [2.0, 2.0, 2.0]
    assert sample["path"].endswith("series")


def _add_bad_inputs(root: Path) -> dict[str, str]:
    """One broken input of each kind; returns file name -> the problem its warning must name."""
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b this is not a NIfTI file")
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.int16), affine_of((1, 1, 1))), str(root / "flat.nii.gz"))
    nan = np.full((12, 12, 12), 40.0, np.float32)
    nan[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(nan, affine_of((1, 1, 1))), str(root / "nan.nii.gz"))
    series = sorted((root / "series").iterdir())
    gap = root / "gap_series"
    gap.mkdir()
    for i, path in enumerate(series):
        if i != len(series) // 2:  # leave out a middle slice
            (gap / path.name).write_bytes(path.read_bytes())
    dup = root / "dup_series"
    dup.mkdir()
    for path in series:
        (dup / path.name).write_bytes(path.read_bytes())
    (dup / "copy.dcm").write_bytes(series[5].read_bytes())
    return {"corrupt.nii.gz": "corrupt", "flat.nii.gz": "2-D image", "nan.nii.gz": "NaN",
            "gap_series": "missing slice", "dup_series": "duplicated slice"}


def test_bad_volumes_are_skipped_warned_and_counted(ct_phantom_folder, tmp_path):
    problems = _add_bad_inputs(ct_phantom_folder)
    dataset, messages = _volumes(ct_phantom_folder, tmp_path / "cache")
    assert len(dataset) == 4
    assert sorted(path.name for path, _ in dataset.skipped) == sorted(problems)
    for name, problem in problems.items():
        named = [m for m in messages if f"{name}:" in m]
        assert named, f"no warning names {name}"
        if problem != "corrupt":  # the reader's own message for a broken file varies with the library version
            assert problem in named[0], named[0]
    assert any("skipped 5 of 9 volumes" in m for m in messages)


def test_strict_makes_a_bad_volume_fatal(ct_phantom_folder, tmp_path):
    _add_bad_inputs(ct_phantom_folder)
    with pytest.raises(DataError, match="cannot use volume"):
        _volumes(ct_phantom_folder, tmp_path / "cache", strict=True)


def test_nothing_readable_is_a_clear_error(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.nii").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 volumes"):
        _volumes(root, tmp_path / "cache")
    with pytest.raises(DataError, match="no NIfTI file"):
        _volumes(tmp_path / "cache", tmp_path / "cache2")


def test_cache_is_reused_and_keyed_by_file_and_settings(ct_phantom_folder, tmp_path):
    cache = tmp_path / "cache"
    first, _ = _volumes(ct_phantom_folder, cache)
    entries = sorted(p.name for p in first.parts[0].folder.iterdir())
    assert len(entries) == 4  # one cached tensor per volume
    second, _ = _volumes(ct_phantom_folder, cache)
    assert sorted(p.name for p in second.parts[0].folder.iterdir()) == entries  # warm: nothing recomputed
    np.testing.assert_array_equal(first[0]["image"].numpy(), second[0]["image"].numpy())
    path = ct_phantom_folder / "p0.nii.gz"
    path.write_bytes(path.read_bytes())  # new modification time: a new cache entry for that file only
    third, _ = _volumes(ct_phantom_folder, cache)
    assert len(list(third.parts[0].folder.iterdir())) == 5
    other = CTVolumes(root=str(ct_phantom_folder), spacing=[3.0, 3.0, 3.0], cache_dir=str(cache))
    assert other.parts[0].folder != first.parts[0].folder


def test_cache_sees_a_rewrite_that_restores_the_modification_time(tmp_path):
    """cp -p / rsync -t write new content and put the old modification time back: the change
    time still moves, so the cached volume is not reused (same size, same mtime, other voxels)."""
    import os

    rng = np.random.default_rng(5)
    folder = tmp_path / "volumes"
    a = write_nifti(make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0)), folder / "a.nii")
    b = write_nifti(make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0)), tmp_path / "b.nii")
    cache = str(tmp_path / "cache")
    before = CTVolumes(root=str(folder), cache_dir=cache)[0]["image"].numpy()
    st = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = CTVolumes(root=str(folder), cache_dir=cache)[0]["image"].numpy()
    expected = CTVolumes(root=str(tmp_path), cache_dir=str(tmp_path / "other"))  # b.nii read afresh
    b_index = [s.path.name for s in expected.parts[0].sources].index("b.nii")
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, expected[b_index]["image"].numpy())


def test_phantom_set_labels_each_phantom_with_its_lesion_type(tmp_path):
    dataset = CTPhantoms(n=6, shape=[24, 24, 24], seed=1, real_volumes=True, hu_window=[-160.0, 240.0],
                         cache_dir=str(tmp_path))
    assert len(dataset) == 7  # six phantoms and the MNI152 template
    assert dataset.classes == list(LESIONS) and np.isnan(dataset.labels[-1])
    rng = np.random.default_rng(1)  # the generator's own draws, in the same order
    truth = [make_phantom(rng, (24, 24, 24), (2.0, 2.0, 2.0)) for _ in range(6)]
    np.testing.assert_array_equal(dataset.labels[:6], [p.label for p in truth])
    image = dataset[0]["image"][0].numpy()
    assert image.shape == (24, 24, 24)  # the body fills the field of view: nothing to crop
    expected = np.clip((truth[0].hu + 160.0) / 400.0, 0.0, 1.0)  # the soft-tissue window
    assert np.abs(image - expected).max() < 0.01
    again = CTPhantoms(n=6, shape=[24, 24, 24], seed=1, real_volumes=False, hu_window=[-160, 240],
                       cache_dir=str(tmp_path))
    assert again.parts[0].folder == dataset.parts[0].folder  # integer HU: the same settings, the same cache


def test_phantom_set_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    """A crash while generating leaves no partial phantom folder for the next run to trust; a
    concurrent writer that finished first wins and the other's copy is discarded."""
    import omnissl_ct.datasets as datasets

    real = datasets.write_nifti
    calls = {"n": 0}

    def crash_on_third(phantom, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed mid-way
        return real(phantom, path)

    monkeypatch.setattr(datasets, "write_nifti", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        CTPhantoms(n=4, shape=[16, 16, 16], real_volumes=False, cache_dir=str(tmp_path / "cache"))
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("phantoms-")]  # nothing left
    monkeypatch.setattr(datasets, "write_nifti", real)
    first = CTPhantoms(n=4, shape=[16, 16, 16], real_volumes=False, cache_dir=str(tmp_path / "cache"))
    folder = first.parts[0].sources[0].path.parent
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    datasets._write_phantoms(folder, 4, [16, 16, 16], [2.0, 2.0, 2.0], 0)  # a racing writer, finishing second
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir() if ".partial-" in p.name] == []
