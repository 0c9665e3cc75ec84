"""Reading and writing 3-D Gaussian splats in the PLY layout of the reference trainer.

The reference 3-D Gaussian Splatting trainer (Kerbl et al., "3D Gaussian Splatting for
Real-Time Radiance Field Rendering", SIGGRAPH 2023) stores one ``vertex`` element with
``x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3`` in *pre-activation*
form: opacity is a logit, scales are logarithms, the quaternion ``rot_0..3`` (w, x, y, z)
is unnormalised and colour is the degree-0 spherical-harmonics coefficient. Any number
of ``f_rest_*`` columns (any SH degree) is accepted; they are view-dependent colour and
are not used here.

A plain point-cloud PLY (``x y z`` with optional ``red green blue``) is the degenerate
case: each point becomes an opaque, isotropic, unrotated Gaussian.

Every object is returned as one ``(num_gaussians, 14)`` float32 array with the columns of
:data:`ATTRIBUTES`, activated and normalised to the unit sphere (scales divided by the
same radius).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Column layout of a splat array: name -> slice.
ATTRIBUTES: dict[str, slice] = {
    "xyz": slice(0, 3),
    "opacity": slice(3, 4),
    "scale": slice(4, 7),
    "rotation": slice(7, 11),
    "colour": slice(11, 14),
}
NUM_ATTRIBUTES = 14
SH_C0 = 0.28209479177387814  # the degree-0 real spherical-harmonics constant, 1 / (2 sqrt(pi))
GAUSSIAN_COLUMNS = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
POINT_SCALE = 0.01  # isotropic scale (unit-sphere units) given to the points of a plain point cloud
MIN_RADIUS = 1e-12  # an object whose Gaussians lie closer than this to their centroid is one point
#: Largest |value| of an activated, normalised attribute: its square summed over 2**20 Gaussians
#: stays finite in float32 (the losses and the grouping statistics square and sum them).
MAX_ABS_VALUE = float(np.sqrt(np.finfo(np.float32).max / 2**20))


class SplatFormatError(ValueError):
    """A PLY file that is not a readable splat or point cloud; the message says what is missing."""


def _columns(vertex: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return np.stack([np.asarray(vertex[name], dtype=np.float64) for name in names], axis=1)


def activate(raw: dict[str, np.ndarray]) -> np.ndarray:
    """Pre-activation 3DGS parameters -> (N, 14) activated attributes (not yet normalised).

    Args:
        raw: ``xyz`` (N, 3), ``f_dc`` (N, 3), ``opacity`` (N, 1) logits, ``scale`` (N, 3) logs,
            ``rotation`` (N, 4) unnormalised (w, x, y, z) quaternions.
    """
    out = np.empty((len(raw["xyz"]), NUM_ATTRIBUTES), dtype=np.float64)
    out[:, ATTRIBUTES["xyz"]] = raw["xyz"]
    with np.errstate(over="ignore"):  # exp(-logit) -> inf is opacity 0; a log-scale past ~709 is
        out[:, ATTRIBUTES["opacity"]] = 1.0 / (1.0 + np.exp(-raw["opacity"]))  # inf: read_splat_ply reports it
        out[:, ATTRIBUTES["scale"]] = np.exp(raw["scale"])
    quat = raw["rotation"]
    out[:, ATTRIBUTES["rotation"]] = quat / np.maximum(np.linalg.norm(quat, axis=1, keepdims=True), 1e-12)
    out[:, ATTRIBUTES["colour"]] = np.clip(0.5 + SH_C0 * raw["f_dc"], 0.0, 1.0)
    return out


def deactivate(splats: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of :func:`activate`: (N, 14) attributes -> pre-activation PLY columns."""
    opacity = np.clip(splats[:, ATTRIBUTES["opacity"]], 1e-6, 1 - 1e-6)
    return {
        "xyz": splats[:, ATTRIBUTES["xyz"]],
        "f_dc": (splats[:, ATTRIBUTES["colour"]] - 0.5) / SH_C0,
        "opacity": np.log(opacity / (1 - opacity)),
        "scale": np.log(np.maximum(splats[:, ATTRIBUTES["scale"]], 1e-12)),
        "rotation": splats[:, ATTRIBUTES["rotation"]],
    }


def normalize_unit_sphere(splats: np.ndarray) -> np.ndarray:
    """Centre an (N, 14) object on its centroid and scale it into the unit sphere.

    Scales are divided by the same radius, so every Gaussian keeps its size relative to the object.
    """
    out = splats.copy()
    xyz = out[:, ATTRIBUTES["xyz"]] - out[:, ATTRIBUTES["xyz"]].mean(axis=0)
    radius = max(float(np.linalg.norm(xyz, axis=1).max()), 1e-12)
    out[:, ATTRIBUTES["xyz"]] = xyz / radius
    out[:, ATTRIBUTES["scale"]] /= radius
    return out


def read_splat_ply(path: str | Path) -> np.ndarray:
    """Read a 3DGS or plain point-cloud PLY file into a normalised (N, 14) float32 array.

    Raises:
        SplatFormatError: the file is truncated, has no ``vertex`` element, lacks columns
            (named in the message), holds attributes that are non-finite (checked again after
            activation, normalisation and the cast to float32) or too large for float32
            statistics, or is degenerate (every Gaussian at one position).
    """
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types for truncated or garbled files
        raise SplatFormatError(f"cannot parse PLY ({type(exc).__name__}: {exc}); the file may be truncated") from exc
    if "vertex" not in ply:
        raise SplatFormatError("no 'vertex' element")
    vertex = ply["vertex"].data
    names = set(vertex.dtype.names or ())
    if len(vertex) == 0:
        raise SplatFormatError("the 'vertex' element is empty")
    if not {"x", "y", "z"} <= names:
        raise SplatFormatError(f"missing position columns {sorted({'x', 'y', 'z'} - names)}")
    gaussian_like = names & set(GAUSSIAN_COLUMNS[3:])
    if gaussian_like:
        missing = [c for c in GAUSSIAN_COLUMNS if c not in names]
        if missing:
            raise SplatFormatError(f"not a complete 3DGS layout: missing columns {missing}")
        splats = activate({
            "xyz": _columns(vertex, ("x", "y", "z")),
            "f_dc": _columns(vertex, ("f_dc_0", "f_dc_1", "f_dc_2")),
            "opacity": _columns(vertex, ("opacity",)),
            "scale": _columns(vertex, ("scale_0", "scale_1", "scale_2")),
            "rotation": _columns(vertex, ("rot_0", "rot_1", "rot_2", "rot_3")),
        })
    else:
        splats = point_cloud_splats(vertex, names)
    _check_finite(splats, "")
    _check_extent(splats)
    with np.errstate(over="ignore"):  # an overflow to inf is what the check below reports
        out = normalize_unit_sphere(splats).astype(np.float32)
    # Check what is cached, after the cast: exp(log-scale 200) is finite in float64 and inf
    # in float32. Values whose square (summed over a million Gaussians) overflows float32
    # would turn the losses and the grouping statistics (a per-object std) into inf, so
    # they are rejected too: no activated, normalised attribute of a real object comes near.
    _check_finite(out, " after activation and normalisation to float32")
    big = ~(np.abs(out) <= MAX_ABS_VALUE).all(axis=0)
    if big.any():
        columns = [name for name, cols in ATTRIBUTES.items() if big[cols].any()]
        raise SplatFormatError(f"values in {columns} beyond +-{MAX_ABS_VALUE:.1e} (largest "
                               f"{float(np.abs(out).max()):.3g}) after normalisation to the unit sphere; "
                               f"their squares overflow float32 in the losses and statistics")
    return out


def _check_finite(splats: np.ndarray, when: str) -> None:
    bad = ~np.isfinite(splats).all(axis=0)
    if bad.any():
        columns = [name for name, cols in ATTRIBUTES.items() if bad[cols].any()]
        raise SplatFormatError(f"non-finite (NaN or inf) values in {columns}{when}")


def _check_extent(splats: np.ndarray) -> None:
    """Reject an object whose Gaussians all sit at one position (or a single Gaussian).

    Normalising it to the unit sphere divides by a zero radius (the old 1e-12 floor made its
    scales 1e10 and more), and there is no shape to learn from it. It is skipped, not kept
    with a warning: no radius makes it comparable with the other objects, and any scale we
    picked for it would be invented. A spread below float32's resolution at the object's
    distance from the origin (one float32 step) counts as one position: it is round-off, not geometry.
    """
    xyz = splats[:, ATTRIBUTES["xyz"]]
    radius = float(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1).max())
    resolution = float(np.finfo(np.float32).eps) * float(np.abs(xyz).max())
    if radius <= max(resolution, MIN_RADIUS):
        raise SplatFormatError(f"degenerate object: all {len(splats)} Gaussians sit at one position "
                               f"(largest distance from their centroid {radius:.3g}), so it has no extent "
                               f"to normalise to the unit sphere")


def point_cloud_splats(vertex: np.ndarray, names: set[str]) -> np.ndarray:
    """A plain point cloud as opaque, isotropic, unrotated Gaussians: (N, 14) (not yet normalised)."""
    n = len(vertex)
    out = np.zeros((n, NUM_ATTRIBUTES), dtype=np.float64)
    out[:, ATTRIBUTES["xyz"]] = _columns(vertex, ("x", "y", "z"))
    out[:, ATTRIBUTES["opacity"]] = 1.0
    xyz = out[:, ATTRIBUTES["xyz"]]
    radius = max(float(np.linalg.norm(xyz - xyz.mean(0), axis=1).max()), 1e-12)
    out[:, ATTRIBUTES["scale"]] = POINT_SCALE * radius  # becomes POINT_SCALE after normalisation
    out[:, 7] = 1.0  # identity quaternion (w, x, y, z)
    if {"red", "green", "blue"} <= names:
        rgb = _columns(vertex, ("red", "green", "blue"))
        out[:, ATTRIBUTES["colour"]] = rgb / (255.0 if vertex["red"].dtype == np.uint8 else 1.0)
    else:
        out[:, ATTRIBUTES["colour"]] = 0.5
    return out


def write_splat_ply(path: str | Path, splats: np.ndarray, sh_degree: int = 0) -> Path:
    """Write (N, 14) activated attributes as a binary 3DGS PLY, as the reference trainer does.

    Normals are written as zeros and the ``f_rest_*`` coefficients of degree ``sh_degree`` as
    zeros (view-independent colour).
    """
    from plyfile import PlyData, PlyElement

    raw = deactivate(np.asarray(splats, dtype=np.float64))
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    columns: list[tuple[str, np.ndarray]] = [
        ("x", raw["xyz"][:, 0]), ("y", raw["xyz"][:, 1]), ("z", raw["xyz"][:, 2]),
        ("nx", np.zeros(len(splats))), ("ny", np.zeros(len(splats))), ("nz", np.zeros(len(splats))),
        *((f"f_dc_{i}", raw["f_dc"][:, i]) for i in range(3)),
        *((f"f_rest_{i}", np.zeros(len(splats))) for i in range(num_rest)),
        ("opacity", raw["opacity"][:, 0]),
        *((f"scale_{i}", raw["scale"][:, i]) for i in range(3)),
        *((f"rot_{i}", raw["rotation"][:, i]) for i in range(4)),
    ]
    vertex = np.empty(len(splats), dtype=[(name, "f4") for name, _ in columns])
    for name, values in columns:
        vertex[name] = values
    path = Path(path)
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    return path
