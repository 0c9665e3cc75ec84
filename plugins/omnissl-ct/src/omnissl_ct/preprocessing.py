"""The deterministic half of the CT/MR pipeline, built from MONAI transforms.

read (NIfTI or DICOM series) -> check it is a finite 3-D volume -> orient to RAS ->
resample to the target spacing -> check it has foreground -> crop to the body -> intensity:
CT windowed from Hounsfield units to [0, 1]; MR, whose values have no physical unit, scaled
per volume from its 0.5th-99.5th percentiles to [0, 1] (MONAI's ScaleIntensityRangePercentiles;
nnU-Net clips a CT data set at the same percentiles), so CT and MR share one range in a mixed run.

These are the defaults of nnssl (Wald et al., "An OpenMind for 3D medical vision
self-supervised learning", 2025) and of MONAI's SwinUNETR pre-training (Tang et al.,
CVPR 2022). Everything here depends only on the file and the settings, so its output
is cached on disk (:mod:`omnissl_ct.datasets`); the random crop and flips run later,
per sample, in the modality.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Mapping

import numpy as np
import torch
from monai.data import NibabelReader
from monai.transforms import (Compose, CropForegroundd, LoadImaged, MapTransform, Orientationd,
                              ScaleIntensityRanged, ScaleIntensityRangePercentilesd, Spacingd)

from omnissl.errors import DataError, RecipeError
from omnissl_ct.readers import PositionOrderedDicomReader

# Bump when the pipeline's output changes for the same settings: old caches are then ignored.
# 2: volumes with no foreground are rejected (version 1 cached them as empty tensors).
PIPELINE_VERSION = 2
# MR intensity: these percentiles of each volume (after the body crop) map to [0, 1], clipped.
# Part of an MR volume's cache key (MR volumes were z-scored before; CT caches stay valid).
MR_PERCENTILES = (0.5, 99.5)
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class PreprocessSettings:
    """What the cached part of the pipeline depends on (besides the file).

    Attributes:
        intensity: ``"ct"`` (Hounsfield units, windowed) or ``"mr"`` (per volume, the
            :data:`MR_PERCENTILES` mapped to [0, 1] and clipped).
        spacing: target voxel size in mm (X, Y, Z); None keeps each volume's own.
        hu_window: CT window [low, high] in HU, mapped to [0, 1] and clipped.
        foreground_hu: CT voxels above this HU count as body for the foreground crop
            (MR: voxels above 0).
        margin: voxels kept around the foreground box.
    """

    intensity: str = "ct"
    spacing: tuple[float, float, float] | None = (1.5, 1.5, 1.5)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    foreground_hu: float = -500.0
    margin: int = 2

    def __post_init__(self) -> None:
        # One spelling per setting, so [2, 2, 2] and [2.0, 2.0, 2.0] (YAML, lists or tuples)
        # give one cache key.
        if self.spacing is not None:
            object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "hu_window", tuple(float(v) for v in self.hu_window))
        object.__setattr__(self, "foreground_hu", float(self.foreground_hu))
        if self.intensity not in ("ct", "mr"):
            raise RecipeError(f"data.intensity must be 'ct' or 'mr', got {self.intensity!r}")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise RecipeError(f"data.spacing must be three positive sizes in mm, got {self.spacing}")
        if len(self.hu_window) != 2 or self.hu_window[0] >= self.hu_window[1]:
            raise RecipeError(f"data.hu_window must be [low, high] with low < high, got {self.hu_window}")

    def key(self) -> str:
        """Short hash of the settings and pipeline version: the cache's sub-folder name."""
        fields = {"version": PIPELINE_VERSION, **asdict(self)}
        if self.intensity == "mr":
            fields["mr_percentiles"] = MR_PERCENTILES
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Above:
    """Foreground selector for CropForeground: voxels above ``threshold`` (picklable, unlike a lambda)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image > self.threshold


class CheckVolumed(MapTransform):
    """Reject what is not a finite 3-D volume with a DataError that says what is wrong."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            spatial = tuple(image.shape[1:])
            if image.shape[0] != 1:
                raise DataError(f"expected one channel (a single 3-D volume), got shape {tuple(image.shape)}; "
                                f"split 4-D series into one file per volume")
            if len(spatial) != 3 or min(spatial) < 2:
                raise DataError(f"a 2-D image (shape {spatial}) where a 3-D volume is expected")
            finite = torch.isfinite(torch.as_tensor(image))
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise DataError(f"{bad} of {finite.numel()} voxels are NaN or infinite")
        return d


class CheckForegroundd(MapTransform):
    """Reject a volume with no voxel above the foreground threshold (all air, or blank).

    The foreground crop that follows would leave an empty volume: a sample with nothing to
    crop, mask or reconstruct. It is rejected (so the data set skips it by name, or stops
    under ``strict``) rather than kept with a warning: there is no body in it to keep, and
    an empty or all-air sample would only feed the statistics and the loss a blank.
    Checked on the resampled volume, which is what the crop sees.

    Args:
        threshold: the crop's threshold (HU for CT, 0 for MR).
        unit: how to print values (``" HU"`` for CT).
    """

    def __init__(self, keys: str, threshold: float, unit: str = ""):
        super().__init__(keys)
        self.threshold, self.unit = threshold, unit

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            if image.numel() == 0 or not bool((image > self.threshold).any()):
                brightest = float(image.max()) if image.numel() else float("nan")
                raise DataError(f"no foreground: no voxel is above the foreground threshold "
                                f"{self.threshold:g}{self.unit} (the brightest is {brightest:g}{self.unit}); "
                                f"an empty or all-air volume")
        return d


class ToCached(MapTransform):
    """Keep a plain float32 tensor and the voxel spacing: what ``torch.load(weights_only=True)`` reads back.

    The last check before the cache: a non-finite or empty result is a DataError, never cached.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            d["spacing"] = torch.as_tensor(np.asarray(image.pixdim, dtype=np.float32)[:3])
            d[key] = torch.as_tensor(image.as_tensor() if hasattr(image, "as_tensor") else image,
                                     dtype=torch.float32).contiguous()
            if d[key].numel() == 0:
                raise DataError(f"preprocessing left an empty volume (shape {tuple(d[key].shape)})")
            finite = torch.isfinite(d[key])
            if not bool(finite.all()):
                raise DataError(f"preprocessing produced {int((~finite).sum())} non-finite voxels")
        return d


def deterministic_transforms(settings: PreprocessSettings, keys: str = "image") -> Compose:
    """The cached pipeline: a dict ``{"image": path, ...}`` in, ``{"image": (1, X, Y, Z), "spacing": (3,)}`` out."""
    # MONAI's default readers include ITK, which is not a dependency; name ours explicitly.
    load = LoadImaged(keys=keys, reader=NibabelReader(), image_only=True, ensure_channel_first=True)
    load.register(PositionOrderedDicomReader())
    steps: list[Any] = [load, CheckVolumed(keys=keys), Orientationd(keys=keys, axcodes="RAS", labels=RAS_LABELS)]
    if settings.spacing is not None:
        steps.append(Spacingd(keys=keys, pixdim=settings.spacing, mode="bilinear"))
    threshold = settings.foreground_hu if settings.intensity == "ct" else 0.0
    steps.append(CheckForegroundd(keys=keys, threshold=threshold, unit=" HU" if settings.intensity == "ct" else ""))
    steps.append(CropForegroundd(keys=keys, source_key=keys, select_fn=Above(threshold), margin=settings.margin,
                                 allow_smaller=True))
    if settings.intensity == "ct":
        low, high = settings.hu_window
        steps.append(ScaleIntensityRanged(keys=keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
    else:
        low, high = MR_PERCENTILES
        steps.append(ScaleIntensityRangePercentilesd(keys=keys, lower=low, upper=high, b_min=0.0, b_max=1.0,
                                                     clip=True))
    steps.append(ToCached(keys=keys))
    return Compose(steps)
