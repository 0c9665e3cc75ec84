"""A labelled splat data set with no download: Gaussians laid on the surfaces of procedural shapes.

Each object is one shape class (sphere, cube, cylinder, cone, torus, capsule) with a random
anisotropic size, rotation, colour, opacity and positional noise. Its Gaussians sit on the
surface like those of a trained 3DGS model: flat discs (two large scales, one small) whose
short axis follows the surface normal. Objects are written as real 3DGS PLY files (the
reference trainer's layout, through :func:`omnissl_splat.ply.write_splat_ply`), one class
per sub-folder, so the folder reader serves them like any user's data.

    python -m omnissl_splat.generate OUT_DIR --per-class 40 --num-gaussians 2048
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from omnissl_splat.ply import NUM_ATTRIBUTES, write_splat_ply

Surface = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def sphere(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points (n, 3) and unit normals (n, 3) uniform on the unit sphere."""
    p = _unit(rng.normal(size=(n, 3)))
    return p, p


def cube(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the surface of [-1, 1]^3: a random face, then a random point on it."""
    axis, sign = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
    p = rng.uniform(-1, 1, (n, 3))
    p[np.arange(n), axis] = sign
    normals = np.zeros((n, 3))
    normals[np.arange(n), axis] = sign
    return p, normals


def cylinder(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius 1, height 2 along z, with caps; side and caps sampled by area (4 pi : 2 pi)."""
    theta, on_side = rng.uniform(0, 2 * np.pi, n), rng.random(n) < 2 / 3
    r = np.where(on_side, 1.0, np.sqrt(rng.random(n)))
    z = np.where(on_side, rng.uniform(-1, 1, n), rng.choice([-1.0, 1.0], n))
    p = np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)
    normals = np.where(on_side[:, None], np.stack([np.cos(theta), np.sin(theta), 0 * z], 1),
                       np.stack([0 * z, 0 * z, np.sign(z)], 1))
    return p, normals


def cone(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Base radius 1 at z = -1, apex at z = 1, with its base disc; sampled by area."""
    side_area, base_area = np.pi * np.sqrt(5.0), np.pi
    theta, on_side = rng.uniform(0, 2 * np.pi, n), rng.random(n) < side_area / (side_area + base_area)
    t = np.sqrt(rng.random(n))  # distance from the apex (side) or from the centre (base), area-uniform
    r = t
    z = np.where(on_side, 1 - 2 * t, -1.0)
    p = np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)
    side_normal = _unit(np.stack([2 * np.cos(theta), 2 * np.sin(theta), np.ones(n)], 1))
    normals = np.where(on_side[:, None], side_normal, np.array([0.0, 0.0, -1.0]))
    return p, normals


def torus(rng: np.random.Generator, n: int, major: float = 0.7, minor: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Torus around z; the tube angle is drawn by rejection so points are area-uniform."""
    phi = np.empty(0)
    while len(phi) < n:
        cand = rng.uniform(0, 2 * np.pi, 2 * n)
        keep = rng.random(2 * n) < (major + minor * np.cos(cand)) / (major + minor)
        phi = np.concatenate([phi, cand[keep]])
    phi, theta = phi[:n], rng.uniform(0, 2 * np.pi, n)
    normals = np.stack([np.cos(phi) * np.cos(theta), np.cos(phi) * np.sin(theta), np.sin(phi)], 1)
    ring = np.stack([major * np.cos(theta), major * np.sin(theta), np.zeros(n)], 1)
    return ring + minor * normals, normals


def capsule(rng: np.random.Generator, n: int, radius: float = 0.5, half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A cylinder of radius 0.5 and half-length 0.5 with hemispherical ends; sampled by area."""
    side_area, ends_area = 2 * np.pi * radius * 2 * half, 4 * np.pi * radius ** 2
    on_side = rng.random(n) < side_area / (side_area + ends_area)
    theta = rng.uniform(0, 2 * np.pi, n)
    side_normal = np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], 1)
    ball = _unit(rng.normal(size=(n, 3)))
    end_normal = ball * np.where(ball[:, 2:] < 0, -1.0, 1.0)  # fold onto +z, then pick an end
    end_normal[:, 2] *= rng.choice([-1.0, 1.0], n)
    normals = np.where(on_side[:, None], side_normal, end_normal)
    centre_z = np.where(on_side, rng.uniform(-half, half, n), np.sign(end_normal[:, 2]) * half)
    p = radius * normals + np.stack([np.zeros(n), np.zeros(n), centre_z], 1)
    return p, normals


SHAPES: dict[str, Surface] = {"sphere": sphere, "cube": cube, "cylinder": cylinder, "cone": cone,
                              "torus": torus, "capsule": capsule}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def quaternion_from_z(normals: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors -> (n, 4) unit quaternions (w, x, y, z) rotating +z onto them (shortest arc)."""
    w = 1.0 + normals[:, 2]
    q = np.stack([w, -normals[:, 1], normals[:, 0], np.zeros(len(normals))], 1)
    flipped = w < 1e-8  # normal = -z: any half-turn about a horizontal axis
    q[flipped] = [0.0, 1.0, 0.0, 0.0]
    return _unit(q)


def make_object(shape: str, num_gaussians: int, rng: np.random.Generator) -> np.ndarray:
    """One object of class ``shape`` as (num_gaussians, 14) activated attributes (see ``ply.ATTRIBUTES``)."""
    points, normals = SHAPES[shape](rng, num_gaussians)
    stretch = rng.uniform(0.7, 1.3, 3)
    rotation = random_rotation(rng)
    xyz = (points * stretch) @ rotation.T
    normals = _unit((normals / stretch) @ rotation.T)  # normals transform by the inverse transpose
    xyz += rng.normal(scale=rng.uniform(0.005, 0.03), size=xyz.shape)
    spacing = np.sqrt(4 * np.pi / num_gaussians)  # mean distance between neighbours on a unit-area-ish surface
    disc = spacing * rng.uniform(0.6, 1.4, (num_gaussians, 1))
    scales = np.concatenate([disc * rng.uniform(0.8, 1.2, (num_gaussians, 2)), 0.1 * disc], 1)
    base = rng.uniform(0.1, 0.9, 3)
    colour = np.clip(base + rng.normal(scale=0.05, size=(num_gaussians, 3)), 0, 1)
    opacity = np.clip(rng.beta(5, 1.5, (num_gaussians, 1)), 0.02, 0.98)
    out = np.concatenate([xyz, opacity, scales, quaternion_from_z(normals), colour], 1)
    assert out.shape == (num_gaussians, NUM_ATTRIBUTES)
    return out


def generate_shapes(out_dir: str | Path, per_class: int = 40, num_gaussians: int = 2048, seed: int = 0,
                    shapes: tuple[str, ...] = tuple(SHAPES)) -> Path:
    """Write ``per_class`` 3DGS PLY objects of each shape into ``out_dir/<shape>/<shape>_<i>.ply``.

    Each object gets between 75% and 100% of ``num_gaussians`` Gaussians (trained splats vary
    in size). The same arguments always write the same files.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for shape in shapes:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            count = int(rng.integers(int(0.75 * num_gaussians), num_gaussians + 1))
            write_splat_ply(out / shape / f"{shape}_{i:04d}.ply", make_object(shape, count, rng))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omnissl_splat.generate", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="folder to write <shape>/<shape>_<i>.ply into")
    parser.add_argument("--per-class", type=int, default=40, help="objects per shape class (default 40)")
    parser.add_argument("--num-gaussians", type=int, default=2048, help="most Gaussians per object (default 2048)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = generate_shapes(args.out_dir, args.per_class, args.num_gaussians, args.seed)
    print(f"wrote {args.per_class * len(SHAPES)} objects ({', '.join(SHAPES)}) to {out}")


if __name__ == "__main__":
    main()
