"""The CT modality: random 3-D crops with MONAI's random transforms, then 3-D patches.

The random half of the pipeline of nnssl and MONAI's SwinUNETR pre-training: a
fixed-size crop (default 96³ voxels) at a random place in the cached volume, random
flips along each axis and random 90° rotations in the axial plane, all drawn from the
generator the trainer passes (seeded by seed, epoch and sample), so runs repeat exactly.
The crop is cut into non-overlapping cubes (default 16³, as UNETR's ViT) by the core's
grid patchifier; coordinates are grid indices and the voxel spacing stays in ``meta``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from monai.transforms import CenterSpatialCrop, Compose, RandFlip, RandRotate90, RandSpatialCrop, SpatialPad
from torch import Tensor

from omnissl import Modality, TokenBatch, Tokens, TokenSpec
from omnissl.errors import RecipeError
from omnissl.recipe import Range
from omnissl.tokenizers import GridPatchifier

from omnissl_ct.viz import draw_three_planes


class CTModality(Modality):
    """3-D volumes as cubic patches with 3-D grid coordinates.

    Samples are dicts with ``image``: (1, X, Y, Z) float tensor (preprocessed, RAS), and
    optionally ``spacing`` (3,) in mm and ``path``.

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
        self.centre = CenterSpatialCrop(roi)
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
        """The (1, S, S, S) crop the model sees: random and augmented when ``rng`` is given, else central."""
        image = torch.as_tensor(sample["image"], dtype=torch.float32)
        if image.ndim == 3:
            image = image[None]
        image = self.pad(image)
        if rng is None:
            out = self.centre(image)
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
