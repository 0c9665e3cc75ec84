"""The CT modality: random 3-D crops with MONAI's random transforms, then 3-D patches.

The random half of the pipeline of nnssl and MONAI's SwinUNETR pre-training: a
fixed-size crop (default 96³ voxels) at a random place in the cached volume, random
flips along each axis and random 90° rotations in the axial plane, all drawn from the
generator the trainer passes (seeded by seed, epoch and sample), so runs repeat exactly.
The crop is cut into non-overlapping cubes (default 16³, as UNETR's ViT) by the core's
grid patchifier; coordinates are grid indices and the voxel spacing stays in ``meta``.

A data set with ``crops_per_volume`` k serves each volume as k samples (``crop_index`` 0 to
k-1 in the sample): in training each gets its own random crop (its own generator), as
MONAI's ``RandSpatialCropSamplesd`` draws k crops of one volume; without augmentation
(validation, probes, plots) crop 0 is the centre crop and the others sit at fixed places
spread evenly over the volume (:func:`crop_starts`), so the k samples stay distinct and
repeatable.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import torch
from monai.transforms import Compose, RandFlip, RandRotate90, RandSpatialCrop, SpatialPad
from torch import Tensor

from omnissl import Modality, TokenBatch, Tokens, TokenSpec
from omnissl.errors import RecipeError
from omnissl.recipe import Range
from omnissl.tokenizers import GridPatchifier

from omnissl_ct.viz import draw_three_planes


def crop_starts(free: Sequence[int], k: int) -> list[tuple[int, ...]]:
    """k distinct crop corners when the volume allows, the centre first, the rest on an even grid.

    Args:
        free: per axis, how far a crop can move (volume size minus crop size, >= 0).
        k: how many crops.

    The grid has the fewest points per axis whose product reaches k, given to the axes with
    the most room first; along an axis with c points they sit at the middles of c equal parts
    of its range (one point: the middle), so the crops tile the volume evenly and stay off its
    edges. A volume with fewer distinct places than k repeats them (a volume no larger than
    the crop has one place).
    """
    counts = [1] * len(free)
    while math.prod(counts) < k:
        room = [(f / c if c <= f else -1.0) for f, c in zip(free, counts)]
        axis = int(np.argmax(room))
        if room[axis] < 0:
            break  # every axis holds as many crops as it has places
        counts[axis] += 1
    centre = tuple(f // 2 for f in free)
    # c points on the f + 1 places of an axis (c <= f + 1): the middles of c equal parts, rounded half
    # up, which keeps them distinct; a single point is the centre crop's place.
    axes = [[f // 2] if c == 1 else [math.floor((i + 0.5) * f / c + 0.5) for i in range(c)]
            for f, c in zip(free, counts)]
    grid = sorted(itertools.product(*axes), key=lambda p: (sum((a - b) ** 2 for a, b in zip(p, centre)), p))
    places = [centre] + [p for p in grid if p != centre]
    return [places[i % len(places)] for i in range(k)]


class CTModality(Modality):
    """3-D volumes as cubic patches with 3-D grid coordinates.

    Samples are dicts with ``image``: (1, X, Y, Z) float tensor (preprocessed, RAS), and
    optionally ``spacing`` (3,) in mm, ``path``, and ``crop_index`` / ``crops_per_volume``
    (which of a volume's crops this sample is; without them, one crop per volume).

    Args:
        crop_size: side of the cubic crop fed to the model, in voxels.
        patch_size: side of each cubic patch; must divide ``crop_size``.
        flip_prob: probability of flipping along each axis during training.
        rotate_prob: probability of a random 90° rotation (1 to 3 quarter turns) in the axial plane.
        baseline_pool: the raw-voxel baseline averages the centre crop over cubes of this side.
    """

    name = "ct"

    def __init__(self, crop_size: Annotated[int, Range(ge=1)] = 96, patch_size: Annotated[int, Range(ge=1)] = 16,
                 flip_prob: Annotated[float, Range(ge=0, le=1)] = 0.5,
                 rotate_prob: Annotated[float, Range(ge=0, le=1)] = 0.5,
                 baseline_pool: Annotated[int, Range(ge=1)] = 2):
        if crop_size % patch_size:
            raise RecipeError(f"modality.crop_size ({crop_size}) must be a multiple of "
                              f"modality.patch_size ({patch_size})")
        if not (0 <= flip_prob <= 1 and 0 <= rotate_prob <= 1):
            raise RecipeError(f"modality.flip_prob and rotate_prob must be in [0, 1], got {flip_prob}, {rotate_prob}")
        self.crop_size = crop_size
        self.patchifier = GridPatchifier(patch_size, channels=1, ndim=3)
        self.grid = (crop_size // patch_size,) * 3
        self.baseline_pool = baseline_pool
        roi = (crop_size,) * 3
        # Padding first means a crop never leaves the volume, however small the volume is.
        self.pad = SpatialPad(roi, mode="constant")
        self.augment = Compose([
            RandSpatialCrop(roi, random_center=True, random_size=False),
            RandFlip(prob=flip_prob, spatial_axis=0),
            RandFlip(prob=flip_prob, spatial_axis=1),
            RandFlip(prob=flip_prob, spatial_axis=2),
            RandRotate90(prob=rotate_prob, max_k=3, spatial_axes=(0, 1)),
        ])

    def spec(self) -> TokenSpec:
        return TokenSpec(self.patchifier.value_dim, (self.patchifier.coord_group,))

    def crop(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tensor:
        """The (1, S, S, S) crop the model sees: random and augmented when ``rng`` is given, else
        at the sample's fixed place (:func:`crop_starts`; the centre for a volume's first crop)."""
        image = torch.as_tensor(sample["image"], dtype=torch.float32)
        if image.ndim == 3:
            image = image[None]
        image = self.pad(image)
        if rng is None:
            free = [s - self.crop_size for s in image.shape[1:]]
            k = int(sample.get("crops_per_volume", 1))
            start = crop_starts(free, k)[int(sample.get("crop_index", 0)) % k]
            out = image[(slice(None), *(slice(a, a + self.crop_size) for a in start))]
        else:
            self.augment.set_random_state(seed=int(rng.integers(2**31 - 1)))
            out = self.augment(image)
        out = out.as_tensor() if hasattr(out, "as_tensor") else out
        return out.contiguous()

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        tokens = self.patchifier(self.crop(sample, rng))
        spacing = sample.get("spacing")
        tokens.meta["spacing"] = tuple(float(s) for s in spacing) if spacing is not None else None
        tokens.meta["path"] = sample.get("path")
        return tokens

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Raw voxels of the centre crop, averaged over ``baseline_pool``³ cubes."""
        crop = self.crop(sample, None)[None]  # [1, 1, S, S, S]
        return torch.nn.functional.avg_pool3d(crop, self.baseline_pool).numpy().ravel()

    def to_volumes(self, values: Tensor) -> Tensor:
        """(B, N, p³) patch values -> (B, S, S, S) voxels."""
        return self.patchifier.unpatchify(values.float(), self.grid)[:, 0]

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        """Axial, coronal and sagittal slices through original / masked / reconstruction."""
        original = self.to_volumes(batch.values)
        masked = self.to_volumes(batch.values.float().masked_fill(hidden[..., None], float("nan")))
        pasted = torch.where(hidden[..., None], predictions["values"].float(), batch.values.float())
        return draw_three_planes(original, masked, self.to_volumes(pasted), path)
