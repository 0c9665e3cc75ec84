"""The image modality: augment, normalise and cut images into square patches (ViT / MAE)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnissl import Modality, Tokens, TokenBatch, TokenSpec
from omnissl.errors import RecipeError
from omnissl.recipe import Range
from omnissl.tokenizers import GridPatchifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_resized_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                            rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering a random area fraction in ``scale`` with aspect in ``ratio``.

    The sampling of torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng`` instead of
    torch's global generator so that the trainer's (seed, epoch, index) seeding decides it.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # Fall back to a centre crop with the aspect clamped into `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageModality(Modality):
    """Images as square patches with 2-D grid coordinates.

    Samples are dicts with ``image``: float array (C, H, W) in [0, 1].

    Args:
        image_size: side of the square image fed to the model (after crop and resize).
        patch_size: side of each square patch.
        channels: 1 (grey) or 3 (RGB).
        crop_scale: area range of the random resized crop during training; None disables it.
        crop_ratio: aspect-ratio range of the random resized crop.
        hflip: flip horizontally with probability 0.5 during training.
        mean: per-channel mean for normalisation (default ImageNet's, or 0.5 for grey).
        std: per-channel std for normalisation.
    """

    name = "image"

    def __init__(self, image_size: Annotated[int, Range(ge=1)] = 224, patch_size: Annotated[int, Range(ge=1)] = 16,
                 channels: Annotated[int, Range(ge=1, le=3)] = 3,
                 crop_scale: Annotated[list[float] | None, Range(gt=0, le=1, ascending=True)] = (0.2, 1.0),
                 crop_ratio: Annotated[list[float], Range(gt=0, ascending=True)] = (3 / 4, 4 / 3),
                 hflip: bool = True, mean: Annotated[list[float] | None, Range(ge=0, le=1)] = None,
                 std: Annotated[list[float] | None, Range(gt=0)] = None):
        if image_size % patch_size:
            raise RecipeError(f"modality.image_size ({image_size}) must be a multiple of "
                              f"modality.patch_size ({patch_size})")
        if channels not in (1, 3):
            raise RecipeError(f"modality.channels must be 1 or 3, got {channels}")
        self.image_size = image_size
        self.patchifier = GridPatchifier(patch_size, channels, ndim=2)
        self.channels = channels
        self.crop_scale = tuple(crop_scale) if crop_scale else None
        self.crop_ratio = tuple(crop_ratio)
        self.hflip = hflip
        self.mean = torch.tensor(mean or (IMAGENET_MEAN if channels == 3 else (0.5,)), dtype=torch.float32)
        self.std = torch.tensor(std or (IMAGENET_STD if channels == 3 else (0.5,)), dtype=torch.float32)
        self.grid = (image_size // patch_size,) * 2

    def spec(self) -> TokenSpec:
        return TokenSpec(self.patchifier.value_dim, (self.patchifier.coord_group,))

    def prepare(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tensor:
        """The (C, S, S) normalised image the model sees: augmented when ``rng`` is given."""
        image = torch.as_tensor(np.asarray(sample["image"], dtype=np.float32))
        if image.ndim == 2:
            image = image[None]
        if image.shape[0] != self.channels:
            if self.channels == 3 and image.shape[0] == 1:
                image = image.expand(3, -1, -1)
            elif self.channels == 1 and image.shape[0] == 3:
                image = (image * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
            else:
                raise RecipeError(f"image has {image.shape[0]} channels; modality.channels is {self.channels}")
        if rng is not None and self.crop_scale is not None:
            top, left, h, w = random_resized_crop_box(image.shape[1], image.shape[2], self.crop_scale,
                                                      self.crop_ratio, rng)
            image = image[:, top:top + h, left:left + w]
        if tuple(image.shape[1:]) != (self.image_size, self.image_size):
            image = F.interpolate(image[None], size=(self.image_size,) * 2, mode="bicubic",
                                  align_corners=False, antialias=True)[0].clamp(0, 1)
        if rng is not None and self.hflip and rng.random() < 0.5:
            image = image.flip(-1)
        return (image - self.mean[:, None, None]) / self.std[:, None, None]

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        return self.patchifier(self.prepare(sample, rng))

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Flattened pixels of the un-augmented, resized image."""
        return self.prepare(sample, None).numpy().ravel()

    def to_pixels(self, values: Tensor) -> Tensor:
        """(B, N, D) patch values -> (B, H, W, C) displayable pixels in [0, 1]."""
        images = self.patchifier.unpatchify(values, self.grid)
        images = images * self.std[:, None, None] + self.mean[:, None, None]
        return images.clamp(0, 1).permute(0, 2, 3, 1)

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        """Rows: original, what the encoder saw (hidden patches greyed), reconstruction."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        original = self.to_pixels(batch.values)
        grey = torch.full_like(batch.values, 0.5)  # hidden patches drawn mid-grey
        grey = (grey.view(*grey.shape[:2], self.channels, -1) - self.mean[:, None]) / self.std[:, None]
        masked = self.to_pixels(torch.where(hidden[..., None], grey.view_as(batch.values), batch.values))
        pasted = torch.where(hidden[..., None], predictions["values"].to(batch.values.dtype), batch.values)
        recon = self.to_pixels(pasted)
        n = original.shape[0]
        fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5), dpi=100, squeeze=False)
        cmap = "gray" if self.channels == 1 else None
        for row, (title, images) in enumerate((("original", original), ("masked", masked),
                                               ("reconstruction", recon))):
            for col in range(n):
                ax = axes[row][col]
                ax.imshow(images[col].squeeze(-1).numpy(), cmap=cmap, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row][0].set_ylabel(title)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path
