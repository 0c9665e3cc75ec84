"""Splat data sets: a folder of PLY files (class sub-folders as labels) and the generated shapes.

PLY parsing, activation and normalisation happen once per file: the result is cached as a
``.npy`` array keyed by the file's path, size and modification time, and ``__getitem__`` of
a warm cache is a memory-mapped read.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from omnissl import skip_or_raise
from omnissl.cache import atomic_folder, cache_folder, write_array
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_splat.generate import SHAPES, generate_shapes
from omnissl_splat.ply import SplatFormatError, read_splat_ply

# Bump when read_splat_ply's output or checks change. "2": caches of version 1 may hold inf
# (a log-scale that overflows float32) or 1e10 scales (a one-position object); re-read them.
CACHE_VERSION = "2"


def _cache_path(cache: Path, file: Path) -> Path:
    stat = file.stat()
    # ctime too: a rewrite whose tool restores the mtime (cp -p, rsync -t) still moves it
    key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{CACHE_VERSION}"
    return cache / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


class SplatFolder:
    """Every ``.ply`` under ``root`` (recursive): 3DGS splats or plain point clouds.

    Files directly inside a class sub-folder of ``root`` are labelled with that folder's
    name (sorted names -> 0, 1, ...). A file that is truncated, is not a splat or point
    cloud, holds NaN attributes or attributes that overflow float32 (checked on the cached
    float32 values), or has all its Gaussians at one position (degenerate) is skipped with
    a warning naming it and what is wrong, and counted in ``skipped``. An object with fewer
    Gaussians than ``min_points`` is kept and padded (``too_few: pad``; the tokeniser marks
    the missing points and groups as padding) or skipped (``too_few: skip``, and listed in
    ``skipped`` too); either way it is counted in ``short``. Each sample is one object, the
    whole of its file, so there are no groups.

    Args:
        root: folder of PLY files.
        min_points: Gaussians an object needs (set it to ``modality.num_points``).
        too_few: ``pad`` or ``skip`` objects with fewer than ``min_points`` Gaussians.
        strict: stop at the first unreadable file instead of skipping it.
        cache_dir: where parsed objects are cached (None: ``$OMNISSL_CACHE/splat``, else ``omnissl/splat``
            in the user's cache folder, ``~/.cache`` on Linux).
    """

    sample_kind = "object"

    def __init__(self, root: str, min_points: Annotated[int, Range(ge=0)] = 0, too_few: Literal["pad", "skip"] = "pad",
                 strict: bool = False, cache_dir: str | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root {self.root} is not a folder; point it at a folder of .ply files")
        if too_few not in ("pad", "skip"):
            raise DataError(f"data.too_few must be 'pad' or 'skip', got {too_few!r}")
        self.cache = cache_folder("splat", cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.min_points, self.too_few = min_points, too_few
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() == ".ply" and p.is_file())
        self.files: list[Path] = []
        self.arrays: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self.short: list[tuple[Path, int]] = []
        unreadable = 0
        for path in candidates:
            cached = _cache_path(self.cache, path)
            try:
                count = self._ensure_cached(path, cached)
            except SplatFormatError as exc:
                skip_or_raise(self.skipped, path, str(exc), strict, cause=exc)
                unreadable += 1
                continue
            if count < min_points:
                self.short.append((path, count))
                if too_few == "skip":
                    reason = f"{count} Gaussians, fewer than data.min_points={min_points}"
                    self.skipped.append((path, reason))
                    warnings.warn(f"skipping {path}: {reason}")
                    continue
            self.files.append(path)
            self.arrays.append(cached)
        if not self.files:
            raise DataError(f"no usable .ply file under {self.root} ({len(candidates)} found, "
                            f"{unreadable} unreadable, {len(self.short)} with fewer than {min_points} "
                            f"Gaussians); see the warnings above for each file")
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {len(candidates)} PLY files under {self.root}")
        if self.short and too_few == "pad":
            warnings.warn(f"{len(self.short)} objects under {self.root} have fewer than {min_points} Gaussians "
                          f"and will be padded")
        relative = [p.relative_to(self.root).parts for p in self.files]
        self.classes = sorted({parts[0] for parts in relative if len(parts) > 1})
        labelled = self.classes and all(len(parts) > 1 for parts in relative)
        self.labels = np.array([self.classes.index(parts[0]) for parts in relative]) if labelled else None
        self.task = "classification"

    @staticmethod
    def _ensure_cached(path: Path, cached: Path) -> int:
        """Parse ``path`` into ``cached`` unless it is there; return the number of Gaussians."""
        if cached.exists():
            return int(np.load(cached, mmap_mode="r").shape[0])
        splats = read_splat_ply(path)
        write_array(cached, splats, f"splats of {path}")
        return len(splats)

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> dict[str, int | float | str]:
        """The files used and, with ``too_few: pad``, how many of their objects are padded."""
        out: dict[str, int | float | str] = {"files": len(self.files)}
        if self.min_points and self.too_few == "pad":
            out[f"objects padded (fewer than {self.min_points} Gaussians)"] = len(self.short)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``splats``: (num_gaussians, 14) float32 (see ``omnissl_splat.ply.ATTRIBUTES``), ``path``."""
        return {"splats": np.load(self.arrays[index], mmap_mode="r"), "path": str(self.files[index])}


class GeneratedShapes(SplatFolder):
    """The procedural shapes of :mod:`omnissl_splat.generate`, written as 3DGS PLY files on first use.

    The files go to ``<cache_dir>/shapes-<per_class>x<num_gaussians>-seed<seed>`` (written to a
    temporary folder and renamed, so an interrupted run never leaves half a data set) and are
    then read like any :class:`SplatFolder`. Labels are the shape classes.

    Args:
        per_class: objects per shape class.
        num_gaussians: most Gaussians per object (each has 75-100% of it).
        seed: generator seed; the same arguments always give the same files.
        min_points: as :class:`SplatFolder`.
        too_few: as :class:`SplatFolder`.
        cache_dir: as :class:`SplatFolder`.
    """

    def __init__(self, per_class: Annotated[int, Range(ge=1)] = 40, num_gaussians: Annotated[int, Range(ge=1)] = 2048,
                 seed: Annotated[int, Range(ge=0)] = 0, min_points: Annotated[int, Range(ge=0)] = 0,
                 too_few: Literal["pad", "skip"] = "pad", cache_dir: str | None = None):
        if per_class < 1 or num_gaussians < 1:
            raise DataError(f"data.per_class and data.num_gaussians must be positive, got {per_class}, "
                            f"{num_gaussians}")
        cache = cache_folder("splat", cache_dir)
        folder = cache / f"shapes-{per_class}x{num_gaussians}-seed{seed}"
        if not folder.is_dir():
            with atomic_folder(folder, "generated splat shapes") as tmp:
                generate_shapes(tmp, per_class, num_gaussians, seed, tuple(SHAPES))
        super().__init__(str(folder), min_points=min_points, too_few=too_few, cache_dir=str(cache))
