"""Cached volumes, served as crops: what every CT/MR data set is built on.

Each volume runs once through the deterministic MONAI pipeline
(:func:`omnissl_ct.preprocessing.deterministic_transforms`) and the result is cached on
disk by ``monai.data.PersistentDataset``, keyed by the file's name, size, modification and
change time (each slice's, for a DICOM series) and by the settings; later epochs and later runs
read the cached tensor instead of re-reading and re-sampling the volume.

A :class:`VolumeSet` holds one cache per intensity handling (CT, MR) and serves each volume
as ``crops_per_volume`` samples; the modality cuts a different crop for each.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import PersistentDataset

from omnissl import skip_or_raise
from omnissl.errors import DataError, RecipeError
from omnissl_ct.preprocessing import PreprocessSettings, deterministic_transforms
from omnissl_ct.readers import Source

INTENSITIES = ("ct", "mr")


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

    def __init__(self, sources: Sequence[Source], settings: PreprocessSettings, cache_dir: str | Path,
                 strict: bool = False):
        self.folder = Path(cache_dir).expanduser() / settings.key()
        items = [{"image": str(s.path), "stamp": s.stamp()} for s in sources]
        transforms = deterministic_transforms(settings)
        everything = PersistentDataset(items, transforms, cache_dir=self.folder)
        self.kept: list[int] = []  # indices into ``sources`` of the usable volumes
        self.skipped: list[tuple[Path, str]] = []
        for i, source in enumerate(sources):
            try:
                everything[i]  # read, check and cache the volume once (a cache hit when warm)
            except Exception as exc:
                reason = _root_cause(exc)
                skip_or_raise(self.skipped, source.path, reason, strict, what="volume", cause=exc)
                continue
            self.kept.append(i)
        self.sources = [sources[i] for i in self.kept]
        self.volumes = PersistentDataset([items[i] for i in self.kept], transforms, cache_dir=self.folder)
        # PersistentDataset's own file name for each entry (its hash of the item, then of the transforms).
        self.files = [self.folder / f"{everything.hash_func(items[i]).decode()}{everything.transform_hash}.pt"
                      for i in self.kept]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (1, X, Y, Z) float32 tensor, "spacing": (3,) mm, "path": str}``.

        A cached volume is memory-mapped, not read whole: a crop reads only its own part of the
        file, which matters when each volume serves several crops. Should the entry have gone
        (a cleared cache), PersistentDataset recomputes it."""
        file = self.files[index]
        item = torch.load(file, weights_only=True, mmap=True) if file.is_file() else self.volumes[index]
        return {"image": item["image"], "spacing": item["spacing"], "path": str(self.sources[index].path)}


@dataclass(frozen=True)
class Volume:
    """One volume and what the data set knows of it besides its voxels.

    Attributes:
        source: the file or DICOM series.
        intensity: ``"ct"`` or ``"mr"``: which preprocessing it gets.
        label: its label as the data set found it (a class name, a number, or None).
        group: what a held-out split keeps together (its path, or a manifest's group cell).
        masks: label masks paired with it, never trained on.
    """

    source: Source
    intensity: str = "ct"
    label: Any = None
    group: str = ""
    masks: tuple[Path, ...] = ()


class VolumeSet:
    """Volumes cached per intensity handling, each served as ``crops_per_volume`` samples.

    Sample ``i`` is crop ``i % k`` of volume ``i // k`` (k = ``crops_per_volume``): ``{"image",
    "spacing", "path", "masks", "crop_index", "crops_per_volume"}``; the modality cuts the crop.
    Volumes are ordered CT first, then MR, each in the order given. ``groups`` holds each
    sample's volume group, so a held-out split by group keeps a volume's crops on one side.

    Args:
        volumes: what to read.
        settings: the preprocessing of each intensity handling present in ``volumes``.
        crops_per_volume: samples per volume.
        cache_dir: cache root.
        strict: stop at the first unusable volume.
        where: the folder or file the volumes came from, for messages.
        skipped: inputs already skipped before reading (manifest rows, unknown modality).
    """

    sample_kind = "crop"
    group_kind = "volume"

    def __init__(self, volumes: Sequence[Volume], settings: dict[str, PreprocessSettings], crops_per_volume: int,
                 cache_dir: str | Path, strict: bool = False, where: str = "", skipped: Sequence[tuple[Any, str]] = ()):
        if crops_per_volume < 1:
            raise RecipeError(f"data.crops_per_volume must be at least 1, got {crops_per_volume}")
        self.crops_per_volume = int(crops_per_volume)
        self.skipped: list[tuple[Any, str]] = list(skipped)
        self.parts: list[VolumeCache] = []
        self.volumes: list[Volume] = []
        for intensity in INTENSITIES:
            chosen = [v for v in volumes if v.intensity == intensity]
            if chosen:
                cache = VolumeCache([v.source for v in chosen], settings[intensity], cache_dir, strict)
                self.parts.append(cache)
                self.volumes += [chosen[i] for i in cache.kept]
                self.skipped += cache.skipped
        self._where = [(part, i) for part in self.parts for i in range(len(part))]
        total = len(volumes) + len(skipped)
        if not self.volumes:
            first = f" (first problem: {self.skipped[0][0]}: {self.skipped[0][1]})" if self.skipped else ""
            raise DataError(f"none of the {total} volumes under {where} is usable{first}")
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {total} volumes under {where}")
        self.groups = np.repeat(np.array([v.group or str(v.source.path) for v in self.volumes], dtype=str),
                                self.crops_per_volume)
        self.masks_found = 0  # masks set apart by the data set (not trained on)

    def __len__(self) -> int:
        return len(self._where) * self.crops_per_volume

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        volume, crop = divmod(int(index), self.crops_per_volume)
        part, local = self._where[volume]
        sample = part[local]
        sample.update(masks=[str(m) for m in self.volumes[volume].masks], crop_index=crop,
                      crops_per_volume=self.crops_per_volume)
        return sample

    def per_crop(self, per_volume: Sequence[float]) -> np.ndarray:
        """A per-volume array repeated for each of a volume's crops (labels repeat per crop)."""
        return np.repeat(np.asarray(per_volume), self.crops_per_volume)

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary, from what the set already holds (no file is read).
        ``files`` counts the volumes used, a DICOM series as one."""
        kinds = [v.source.kind for v in self.volumes]
        out: dict[str, int | float | str] = {"files": len(self.volumes), "crops per volume": self.crops_per_volume}
        if "dicom" in kinds:
            out["DICOM series"] = kinds.count("dicom")
        intensities = [v.intensity for v in self.volumes]
        if "mr" in intensities:
            out["CT volumes"], out["MR volumes"] = intensities.count("ct"), intensities.count("mr")
        if self.masks_found:
            out["masks (not trained on)"] = self.masks_found
            out["volumes paired with a mask"] = sum(1 for v in self.volumes if v.masks)
        return out
