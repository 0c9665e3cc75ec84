"""Folder reading: labels from class folders, caching, bad files skipped and counted, short objects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_splat.datasets import GeneratedShapes, SplatFolder
from omnissl_splat.generate import SHAPES, make_object
from omnissl_splat.ply import write_splat_ply


def test_folder_labels_and_warm_cache(splat_shapes_dir: Path, tmp_path: Path) -> None:
    data = SplatFolder(str(splat_shapes_dir), cache_dir=str(tmp_path))
    assert len(data) == 18 and data.classes == sorted(SHAPES)
    assert data.sample_kind == "object" and data.summary() == {"files": 18} and not hasattr(data, "groups")
    assert np.bincount(data.labels).tolist() == [3] * 6
    first = data[0]["splats"]
    assert first.shape[1] == 14 and isinstance(first, np.memmap)
    again = SplatFolder(str(splat_shapes_dir), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again[5]["splats"], data[5]["splats"])


def test_bad_files_are_skipped_with_a_warning_naming_them(splat_shapes_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    shutil.copytree(splat_shapes_dir, root)
    (root / "cube" / "truncated.ply").write_bytes((root / "cube" / "cube_0000.ply").read_bytes()[:300])
    (root / "cube" / "notes.ply").write_text("this is not a PLY file")
    nan = make_object("sphere", 200, np.random.default_rng(0))
    nan[7, 3] = np.nan
    write_splat_ply(root / "sphere" / "nan.ply", nan)
    with pytest.warns(UserWarning) as record:
        data = SplatFolder(str(root), cache_dir=str(tmp_path / "cache"))
    messages = "\n".join(str(w.message) for w in record)
    for name in ("truncated.ply", "notes.ply", "nan.ply"):
        assert name in messages
    assert "non-finite" in messages and "opacity" in messages
    assert len(data) == 18 and len(data.skipped) == 3
    assert data.summary()["files"] == 18  # the files used, not the 21 found


def test_short_objects_padded_or_skipped_and_counted(splat_shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="padded"):
        padded = SplatFolder(str(splat_shapes_dir), min_points=190, too_few="pad", cache_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="fewer than data.min_points"):
        skipped = SplatFolder(str(splat_shapes_dir), min_points=190, too_few="skip", cache_dir=str(tmp_path))
    assert 0 < len(padded.short) == len(skipped.short)
    assert len(padded) == 18 and len(skipped) == 18 - len(skipped.short)
    assert padded.summary() == {"files": 18, "objects padded (fewer than 190 Gaussians)": len(padded.short)}
    # Skipped objects are skipped inputs like unreadable files: listed, so the run's data summary counts them.
    assert [(path, f"{count} Gaussians, fewer than data.min_points=190") for path, count in skipped.short] == \
        skipped.skipped and padded.skipped == []
    assert skipped.summary() == {"files": 18 - len(skipped.short)}


def test_nothing_readable_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "a.ply").write_text("garbage")
    with pytest.warns(UserWarning, match="a.ply"), pytest.raises(DataError, match="no usable .ply"):
        SplatFolder(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not a folder"):
        SplatFolder(str(tmp_path / "missing"))


def test_generated_shapes_are_written_once_and_deterministic(tmp_path: Path) -> None:
    first = GeneratedShapes(per_class=2, num_gaussians=64, seed=3, cache_dir=str(tmp_path))
    folder = first.root
    stamp = (folder / "torus" / "torus_0001.ply").stat().st_mtime_ns
    second = GeneratedShapes(per_class=2, num_gaussians=64, seed=3, cache_dir=str(tmp_path))
    assert (folder / "torus" / "torus_0001.ply").stat().st_mtime_ns == stamp
    assert len(second) == 12 and second.labels.tolist() == first.labels.tolist()
    other = GeneratedShapes(per_class=2, num_gaussians=64, seed=3, cache_dir=str(tmp_path / "elsewhere"))
    np.testing.assert_array_equal(other[4]["splats"], first[4]["splats"])


def test_cache_sees_a_rewrite_that_restores_the_modification_time(tmp_path: Path) -> None:
    """cp -p / rsync -t: other Gaussians under the same size and mtime are read afresh."""
    import os

    rng = np.random.default_rng(1)
    folder = tmp_path / "mine"
    folder.mkdir()
    target = write_splat_ply(folder / "object.ply", make_object("torus", 300, rng))
    second = write_splat_ply(tmp_path / "other.ply", make_object("cube", 300, rng))  # same size on disk
    before = SplatFolder(str(folder), cache_dir=str(tmp_path / "cache"))[0]["splats"]
    st = os.stat(target)
    Path(target).write_bytes(second.read_bytes())
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = SplatFolder(str(folder), cache_dir=str(tmp_path / "cache"))[0]["splats"]
    fresh = SplatFolder(str(folder), cache_dir=str(tmp_path / "fresh"))[0]["splats"]
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, fresh)
