"""Issue 12: values that overflow float32 after activation and one-position objects never
reach the cache; each such file is skipped by name, with the reason, and counted."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from omnissl.errors import DataError
from omnissl_splat.datasets import SplatFolder, _cache_path
from omnissl_splat.generate import make_object
from omnissl_splat.ply import ATTRIBUTES, SplatFormatError, read_splat_ply, write_splat_ply


def _folder_with_good_objects(splat_shapes_dir: Path, root: Path) -> Path:
    """Two labelled classes of good objects (6 files) to put a bad one among."""
    for label in ("cube", "sphere"):
        shutil.copytree(splat_shapes_dir / label, root / label)
    return root


def _edit_vertex(source: Path, target: Path, **columns: tuple[slice | int, float]) -> Path:
    """Copy a 3DGS PLY with ``column=(rows, value)`` written into its raw (pre-activation) columns."""
    vertex = PlyData.read(str(source))["vertex"].data.copy()
    for name, (rows, value) in columns.items():
        vertex[name][rows] = value
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(target))
    return target


def _cached_arrays(cache: Path) -> list[np.ndarray]:
    return [np.load(path) for path in sorted(cache.glob("*.npy"))]


def _load(root: Path, cache: Path, **kwargs) -> tuple[SplatFolder, str]:
    with pytest.warns(UserWarning) as record:
        data = SplatFolder(str(root), cache_dir=str(cache), **kwargs)
    return data, "\n".join(str(w.message) for w in record)


def test_log_scale_that_overflows_float32_is_skipped_and_never_cached(splat_shapes_dir: Path, tmp_path: Path) -> None:
    """exp(200) = 7e86 is finite in float64 (the old check) and inf in the float32 cache."""
    root = _folder_with_good_objects(splat_shapes_dir, tmp_path / "data")
    bad = _edit_vertex(root / "cube" / "cube_0000.ply", root / "cube" / "huge_scale.ply", scale_1=(7, 200.0))
    with pytest.raises(SplatFormatError, match=r"non-finite .*\['scale'\].*float32"):
        read_splat_ply(bad)
    data, messages = _load(root, tmp_path / "cache")
    assert [(path.name, "scale" in reason and "float32" in reason) for path, reason in data.skipped] == \
        [("huge_scale.ply", True)]
    assert "huge_scale.ply" in messages and "skipped 1 of 7 PLY files" in messages
    assert len(data) == 6 and bad not in data.files
    assert np.bincount(data.labels).tolist() == [3, 3]
    cached = _cached_arrays(tmp_path / "cache")
    assert len(cached) == 6 and all(np.isfinite(array).all() for array in cached)
    assert not _cache_path(tmp_path / "cache", bad).exists()


def test_scale_whose_square_overflows_float32_is_skipped(tmp_path: Path) -> None:
    """exp(45) = 3.5e19 survives the float32 cast, but its square (the losses, the grouping std) is inf."""
    with np.errstate(over="ignore"):
        assert np.isinf(np.square(np.float32(np.exp(45.0))))
    (tmp_path / "data").mkdir()
    good = write_splat_ply(tmp_path / "data" / "good.ply", make_object("torus", 64, np.random.default_rng(0)))
    _edit_vertex(good, tmp_path / "data" / "big.ply", scale_2=(slice(0, 3), 45.0))
    data, messages = _load(tmp_path / "data", tmp_path / "cache")
    assert [path.name for path, _ in data.skipped] == ["big.ply"]
    assert "'scale'" in data.skipped[0][1] and "overflow float32" in data.skipped[0][1]
    assert all(np.isfinite(np.square(array, dtype=np.float32)).all() for array in _cached_arrays(tmp_path / "cache"))


def test_a_plausibly_large_scale_is_kept(tmp_path: Path) -> None:
    """The bound is float32's, not a taste in sizes: a Gaussian 1,000 times its object is still read."""
    (tmp_path / "data").mkdir()
    good = write_splat_ply(tmp_path / "good.ply", make_object("cube", 64, np.random.default_rng(1)))
    path = _edit_vertex(good, tmp_path / "data" / "wide.ply", scale_0=(4, float(np.log(1e3))))
    out = read_splat_ply(path)
    assert np.isfinite(out).all() and out[:, ATTRIBUTES["scale"]].max() > 100


@pytest.mark.parametrize("points", [200, 1], ids=["all-at-one-position", "single-gaussian"])
def test_object_with_all_gaussians_at_one_position_is_skipped_as_degenerate(splat_shapes_dir: Path, tmp_path: Path,
                                                                            points: int) -> None:
    """The old reader divided by a zero radius floored at 1e-12: scales of 5e10 went to the cache."""
    root = _folder_with_good_objects(splat_shapes_dir, tmp_path / "data")
    splats = make_object("sphere", 200, np.random.default_rng(2))[:points]
    splats[:, ATTRIBUTES["xyz"]] = [3.25, -1.5, 7.0]
    splats[:, ATTRIBUTES["scale"]] = 0.05
    bad = write_splat_ply(root / "sphere" / "point.ply", splats)
    with pytest.raises(SplatFormatError, match="degenerate"):
        read_splat_ply(bad)
    data, messages = _load(root, tmp_path / "cache")
    assert [path.name for path, _ in data.skipped] == ["point.ply"]
    assert "degenerate" in data.skipped[0][1] and "one position" in data.skipped[0][1]
    assert "point.ply" in messages
    cached = _cached_arrays(tmp_path / "cache")
    assert len(cached) == 6 and max(float(a[:, ATTRIBUTES["scale"]].max()) for a in cached) < 10


def test_plain_point_cloud_at_one_position_is_degenerate(tmp_path: Path) -> None:
    vertex = np.zeros(20, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"] = 1e5
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "cloud.ply"))
    with pytest.raises(SplatFormatError, match="degenerate object: all 20 Gaussians"):
        read_splat_ply(tmp_path / "cloud.ply")


def test_small_object_far_from_the_origin_is_not_degenerate(tmp_path: Path) -> None:
    splats = make_object("cone", 100, np.random.default_rng(3))
    splats[:, ATTRIBUTES["xyz"]] = splats[:, ATTRIBUTES["xyz"]] * 1e-3 + 50.0
    splats[:, ATTRIBUTES["scale"]] *= 1e-3
    out = read_splat_ply(write_splat_ply(tmp_path / "small.ply", splats))
    assert np.isfinite(out).all()
    assert np.linalg.norm(out[:, ATTRIBUTES["xyz"]], axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_strict_makes_a_degenerate_or_overflowing_file_fatal(splat_shapes_dir: Path, tmp_path: Path) -> None:
    root = _folder_with_good_objects(splat_shapes_dir, tmp_path / "data")
    _edit_vertex(root / "cube" / "cube_0001.ply", root / "cube" / "huge_scale.ply", scale_0=(0, 200.0))
    with pytest.raises(DataError, match=r"huge_scale\.ply.*float32"):
        SplatFolder(str(root), strict=True, cache_dir=str(tmp_path / "cache"))


def test_cache_written_by_the_old_reader_is_not_reused(splat_shapes_dir: Path, tmp_path: Path) -> None:
    """A version-1 cache entry may hold inf (cached before this check); it is read afresh."""
    root = _folder_with_good_objects(splat_shapes_dir, tmp_path / "data")
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in sorted(root.rglob("*.ply")):
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|1"
        np.save(cache / f"{hashlib.sha1(key.encode()).hexdigest()}.npy", np.full((200, 14), np.inf, np.float32))
    data = SplatFolder(str(root), cache_dir=str(cache))
    assert all(np.isfinite(np.asarray(data[i]["splats"])).all() for i in range(len(data)))
