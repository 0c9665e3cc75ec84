"""CT/MR volume data sets: a folder or list of volumes, and the synthetic-phantom demo set.

Each volume runs once through the deterministic MONAI pipeline
(:func:`omnissl_ct.preprocessing.deterministic_transforms`) and the result is cached on
disk by ``monai.data.PersistentDataset``, keyed by the file's name, size, modification and
change time (each slice's, for a DICOM series) and by the settings; later epochs and later runs
read the cached tensor instead of re-reading and re-sampling the volume.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
from monai.data import PersistentDataset

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_ct.phantom import GENERATOR_VERSION, LESIONS, make_phantom, write_nifti
from omnissl_ct.preprocessing import PreprocessSettings, deterministic_transforms
from omnissl_ct.readers import Source, discover

DEFAULT_CACHE = "~/.cache/omnissl/ct"
MNI152_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _root_cause(exc: BaseException) -> str:
    """The innermost error's message: MONAI wraps a failing transform's error in RuntimeErrors."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, DataError) else str(exc)


class VolumeCache:
    """Volumes after the deterministic pipeline, cached on disk; unreadable ones skipped.

    Args:
        sources: the volumes.
        settings: preprocessing settings (part of the cache key).
        cache_dir: cache root; entries live in ``cache_dir/<settings key>/``.
        strict: raise on the first unusable volume instead of skipping it.
    """

    def __init__(self, sources: Sequence[Source], settings: PreprocessSettings, cache_dir: str,
                 strict: bool = False):
        self.folder = Path(cache_dir).expanduser() / settings.key()
        items = [{"image": str(s.path), "stamp": s.stamp()} for s in sources]
        transforms = deterministic_transforms(settings)
        everything = PersistentDataset(items, transforms, cache_dir=self.folder)
        kept: list[int] = []
        self.skipped: list[tuple[Path, str]] = []
        for i, source in enumerate(sources):
            try:
                everything[i]  # read, check and cache the volume once (a cache hit when warm)
            except Exception as exc:
                reason = _root_cause(exc)
                skip_or_raise(self.skipped, source.path, reason, strict, what="volume", cause=exc)
                continue
            kept.append(i)
        self.sources = [sources[i] for i in kept]
        self.volumes = PersistentDataset([items[i] for i in kept], transforms, cache_dir=self.folder)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (1, X, Y, Z) float32 tensor, "spacing": (3,) mm, "path": str}``."""
        item = self.volumes[index]
        return {"image": item["image"], "spacing": item["spacing"], "path": str(self.sources[index].path)}


class CTVolumes:
    """Every NIfTI file and DICOM series under ``root`` (recursive) or named in ``list_file``.

    Unusable volumes (corrupt files, a series with a missing or duplicated slice, a 2-D
    image, NaN voxels, no voxel above ``foreground_hu``: all air) are skipped with a warning
    naming the file and the problem, and counted in ``skipped``; ``strict: true`` makes them
    fatal.

    Args:
        root: folder searched recursively for ``.nii``/``.nii.gz`` files and DICOM series folders.
        list_file: text file with one volume path per line (instead of ``root``).
        intensity: ``ct`` (HU window to [0, 1]) or ``mr`` (per-volume normalisation).
        spacing: target voxel size in mm; null keeps each volume's own.
        hu_window: CT intensity window in HU, mapped to [0, 1].
        foreground_hu: CT body threshold (HU) for the foreground crop.
        cache_dir: where preprocessed volumes are cached.
        strict: stop at the first unusable volume.
    """

    def __init__(self, root: str | None = None, list_file: str | None = None, intensity: str = "ct",
                 spacing: Annotated[list[float] | None, Range(gt=0)] = (1.5, 1.5, 1.5),
                 hu_window: Annotated[list[float], Range(ascending=True)] = (-1000.0, 1000.0),
                 foreground_hu: Annotated[float, Range()] = -500.0, cache_dir: str = DEFAULT_CACHE,
                 strict: bool = False):
        settings = PreprocessSettings(intensity, spacing, hu_window, foreground_hu)
        sources = discover(root, list_file)
        where = root if root is not None else list_file
        if not sources:
            raise DataError(f"no NIfTI file (.nii, .nii.gz) or DICOM series under {where}")
        self.cache = VolumeCache(sources, settings, cache_dir, strict)
        self.skipped = self.cache.skipped
        if not len(self.cache):
            raise DataError(f"none of the {len(sources)} volumes under {where} is usable "
                            f"(first problem: {self.skipped[0][0]}: {self.skipped[0][1]})")
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {len(sources)} volumes under {where}")

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.cache[index]


def mni152_t1_path() -> Path:
    """nilearn's bundled MNI152 (ICBM 2009a symmetric) T1 template, read from the installed package."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.real_volumes needs nilearn, whose wheel ships the MNI152 template: "
                        "pip install nilearn (or set data.real_volumes=false)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / MNI152_T1


class CTPhantoms:
    """Synthetic CT phantoms written as NIfTI files, plus real volumes that ship with pip packages.

    Phantoms come from :func:`omnissl_ct.phantom.make_phantom`; each is labelled with the
    morphology of its central lesion (solid, hollow, lobulated, mottled), drawn by the
    generator: an honest probe target that needs shape and texture, since the lesion's
    attenuation is drawn independently of its type.
    With ``real_volumes``, nilearn's MNI152 T1 template (real MR, normalised per volume)
    joins the pre-training data, unlabelled.

    Args:
        n: number of phantoms.
        shape: phantom size in voxels (X, Y, Z).
        spacing: phantom voxel size in mm; also the resampling target.
        seed: phantom generator seed.
        real_volumes: add the MNI152 T1 template (unlabelled).
        hu_window: CT intensity window in HU, mapped to [0, 1] (the demo uses the abdominal
            soft-tissue window, [-160, 240]).
        cache_dir: where phantoms and preprocessed volumes are stored.
    """

    def __init__(self, n: Annotated[int, Range(ge=1)] = 200, shape: Annotated[list[int], Range(ge=1)] = (48, 48, 48),
                 spacing: Annotated[list[float], Range(gt=0)] = (2.0, 2.0, 2.0), seed: Annotated[int, Range(ge=0)] = 0,
                 real_volumes: bool = True,
                 hu_window: Annotated[list[float], Range(ascending=True)] = (-1000.0, 1000.0),
                 cache_dir: str = DEFAULT_CACHE):
        size = f"{'x'.join(map(str, shape))}-{'x'.join(map(str, spacing))}"
        folder = Path(cache_dir).expanduser() / f"phantoms-v{GENERATOR_VERSION}-n{n}-s{seed}-{size}"
        labels_file = folder / "labels.json"
        if not labels_file.is_file():
            _write_phantoms(folder, n, shape, spacing, seed)
        labels = json.loads(labels_file.read_text())
        ct = PreprocessSettings("ct", spacing, hu_window)
        self.parts = [VolumeCache([Source(folder / name, "nifti") for name in sorted(labels)], ct, cache_dir)]
        label_list = [float(labels[s.path.name]) for s in self.parts[0].sources]
        if real_volumes:
            mr = PreprocessSettings("mr", spacing)
            self.parts.append(VolumeCache([Source(mni152_t1_path(), "nifti")], mr, cache_dir))
            label_list += [float("nan")] * len(self.parts[1])
        self.labels = np.array(label_list)
        self.classes = list(LESIONS)
        self.task = "classification"
        self.skipped = [s for part in self.parts for s in part.skipped]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for part in self.parts:
            if index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError(index)


def _write_phantoms(folder: Path, n: int, shape: Sequence[int], spacing: Sequence[float], seed: int) -> None:
    """Generate the phantom set into a private folder and rename it into place, so a crash
    never leaves a partial set and two processes generating the same set at once (DDP ranks,
    parallel tests) never mix files; the loser of the race discards its copy."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    rng = np.random.default_rng(seed)
    labels = {}
    try:
        for i in range(n):
            phantom = make_phantom(rng, shape, spacing)
            write_nifti(phantom, partial / f"phantom_{i:05d}.nii.gz")
            labels[f"phantom_{i:05d}.nii.gz"] = phantom.label
        (partial / "labels.json").write_text(json.dumps(labels, indent=0))
        if folder.is_dir() and not (folder / "labels.json").is_file():
            shutil.rmtree(folder)  # a partial set left by a crash of an older version
        try:
            os.rename(partial, folder)
        except OSError:
            if not (folder / "labels.json").is_file():  # not another process's complete set
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
