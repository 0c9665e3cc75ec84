"""PLY reading and writing: 3DGS round trip, any SH degree, plain point clouds, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from omnissl_splat.generate import make_object
from omnissl_splat.ply import ATTRIBUTES, SH_C0, SplatFormatError, normalize_unit_sphere, read_splat_ply, write_splat_ply


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_round_trip_gives_identical_activated_attributes(tmp_path: Path, sh_degree: int) -> None:
    splats = make_object("torus", 300, np.random.default_rng(0))
    path = write_splat_ply(tmp_path / "torus.ply", splats, sh_degree=sh_degree)
    names = PlyData.read(str(path))["vertex"].data.dtype.names
    assert sum(n.startswith("f_rest_") for n in names) == 3 * ((sh_degree + 1) ** 2 - 1)
    back = read_splat_ply(path)
    np.testing.assert_allclose(back, normalize_unit_sphere(splats), atol=2e-5, rtol=1e-4)
    assert np.linalg.norm(back[:, ATTRIBUTES["xyz"]], axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_activations_follow_the_3dgs_definitions(tmp_path: Path) -> None:
    raw = np.zeros(4, dtype=[(n, "f4") for n in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0",
                                                  "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")])
    raw["x"] = [1, -1, 0, 0]
    raw["f_dc_0"] = 1.0
    raw["opacity"] = 0.0
    raw["scale_0"] = np.log(0.5)
    raw["rot_0"] = 2.0
    PlyData([PlyElement.describe(raw, "vertex")]).write(str(tmp_path / "g.ply"))
    out = read_splat_ply(tmp_path / "g.ply")
    np.testing.assert_allclose(out[:, ATTRIBUTES["opacity"]], 0.5)  # sigmoid(0)
    np.testing.assert_allclose(out[:, 4], 0.5 / 1.0)  # exp(log 0.5), divided by the radius 1
    np.testing.assert_allclose(out[:, ATTRIBUTES["rotation"]], [[1, 0, 0, 0]] * 4)  # normalised quaternion
    np.testing.assert_allclose(out[:, 11], 0.5 + SH_C0, rtol=1e-6)


def test_plain_point_cloud_with_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vertex = np.zeros(50, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis in "xyz":
        vertex[axis] = rng.normal(size=50) * 5 + 3
    vertex["red"] = 255
    PlyData([PlyElement.describe(vertex, "vertex")], text=True).write(str(tmp_path / "cloud.ply"))
    out = read_splat_ply(tmp_path / "cloud.ply")
    assert out.shape == (50, 14)
    np.testing.assert_allclose(out[:, ATTRIBUTES["colour"]], [[1, 0, 0]] * 50)
    np.testing.assert_allclose(out[:, ATTRIBUTES["opacity"]], 1.0)
    assert np.abs(out[:, ATTRIBUTES["xyz"]].mean(0)).max() < 1e-5


def test_incomplete_layout_names_the_missing_columns(tmp_path: Path) -> None:
    vertex = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("opacity", "f4")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "half.ply"))
    with pytest.raises(SplatFormatError, match="scale_0"):
        read_splat_ply(tmp_path / "half.ply")


def test_truncated_file_is_a_format_error(tmp_path: Path) -> None:
    path = write_splat_ply(tmp_path / "t.ply", make_object("cube", 100, np.random.default_rng(0)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SplatFormatError, match="truncated"):
        read_splat_ply(path)


def test_nan_attributes_are_rejected(tmp_path: Path) -> None:
    splats = make_object("cone", 100, np.random.default_rng(0))
    splats[3, ATTRIBUTES["colour"]] = np.nan
    with pytest.raises(SplatFormatError, match="colour"):
        read_splat_ply(write_splat_ply(tmp_path / "nan.ply", splats))
