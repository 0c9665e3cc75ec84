"""The splat modality: groups of Gaussians found by FPS + kNN, scored by Chamfer (Gaussian-MAE).

Tokenisation runs in two steps. ``tokenize`` (in DataLoader workers) samples ``num_points``
Gaussians of one object and augments them; its tokens are single Gaussians. ``on_device``
(on the training device, after collation) groups the whole batch at once: farthest-point
sampling of ``num_groups`` centres, the ``group_size`` nearest Gaussians of each centre, in
centre-relative coordinates (Point-MAE; Gaussian-MAE's feature grouping as an option). The
encoder sees one token per group: its members' 14 attributes flattened, at the centre's xyz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from omnissl import CoordGroup, Modality, TargetStream, TokenBatch, Tokens, TokenSpec
from omnissl.errors import RecipeError
from omnissl.recipe import Range
from omnissl.tokens import gather_rows
from omnissl_splat.embedding import MiniPointNet
from omnissl_splat.grouping import gather_groups, group_points
from omnissl_splat.losses import LOSS_TERMS, GaussianGroupLoss, object_means
from omnissl_splat.ply import ATTRIBUTES, NUM_ATTRIBUTES

DEFAULT_WEIGHTS = {"xyz": 1.0, "opacity": 0.05, "scale": 0.5, "rotation": 0.05, "colour": 0.05}
D2_BINS = 32


class SplatModality(Modality):
    """3-D Gaussian splats as groups of Gaussians with xyz centres.

    Samples are dicts with ``splats``: (num_gaussians, 14) float array of activated attributes
    on the unit sphere (``omnissl_splat.ply.ATTRIBUTES``).

    Args:
        num_points: Gaussians sampled per object (ShapeSplat: 1,024); smaller objects are padded.
        num_groups: G, tokens per object (ShapeSplat: 64).
        group_size: k, Gaussians per token (ShapeSplat: 32).
        group_by: attributes whose per-object standardised values span the space FPS and kNN
            measure distances in; ``[xyz]`` is Point-MAE's grouping, adding others (``opacity``,
            ``scale``, ``rotation``, ``colour``) is Gaussian-MAE's feature grouping.
        pooling: ``max`` (Point-MAE) or ``splat`` (Gaussian-MAE's splat pooling) in the group embedding.
        embed_hidden: width of the group embedding's first shared MLP (Point-MAE: 128).
        loss_weights: weight of each loss term (``xyz``: Chamfer-L2; ``opacity``, ``scale``,
            ``rotation``, ``colour``: attributes paired by nearest xyz).
        attribute_targets: ``centred`` scores hidden groups' opacity, scale and colour after
            subtracting the object's mean of each (the ``splats`` target stream), so copying an
            object-wide colour or size from the visible groups earns nothing; ``raw`` scores them
            as they are (the ``values`` stream, Gaussian-MAE as published).
        augment_scale: range of the random isotropic scaling in training (positions and scales), or None.
        augment_shift: largest random translation per axis in training.
    """

    name = "splat"
    # Point-MAE's classification readout: a class shows in a few groups among many alike ones.
    readout = "mean_max"

    def __init__(self, num_points: Annotated[int, Range(ge=1)] = 1024, num_groups: Annotated[int, Range(ge=1)] = 64,
                 group_size: Annotated[int, Range(ge=1)] = 32,
                 group_by: list[str] = ("xyz",), pooling: Literal["max", "splat"] = "max",
                 embed_hidden: Annotated[int, Range(ge=1)] = 128,
                 loss_weights: Annotated[dict[str, float] | None, Range(ge=0)] = None,
                 attribute_targets: Literal["centred", "raw"] = "centred",
                 augment_scale: Annotated[list[float] | None, Range(gt=0, ascending=True)] = (0.8, 1.25),
                 augment_shift: Annotated[float, Range(ge=0)] = 0.1):
        if min(num_points, num_groups, group_size) < 1:
            raise RecipeError("modality.num_points, num_groups and group_size must be positive")
        if num_groups > num_points:
            raise RecipeError(f"modality.num_groups ({num_groups}) cannot exceed modality.num_points ({num_points})")
        unknown = [a for a in group_by if a not in ATTRIBUTES]
        if unknown or not group_by:
            raise RecipeError(f"modality.group_by {list(group_by)}: use a non-empty list of {', '.join(ATTRIBUTES)}")
        if pooling not in ("max", "splat"):
            raise RecipeError(f"modality.pooling must be 'max' or 'splat', got {pooling!r}")
        if attribute_targets not in ("centred", "raw"):
            raise RecipeError(f"modality.attribute_targets must be 'centred' or 'raw', got {attribute_targets!r}")
        weights = dict(DEFAULT_WEIGHTS if loss_weights is None else loss_weights)
        self.loss = GaussianGroupLoss(weights)
        if not any(self.loss.weights.values()):
            raise RecipeError(f"modality.loss_weights gives every term ({', '.join(LOSS_TERMS)}) weight 0")
        self.num_points, self.num_groups, self.group_size = num_points, num_groups, group_size
        self.group_by = tuple(group_by)
        self.pooling = pooling
        self.embed_hidden = embed_hidden
        self.attribute_targets = attribute_targets
        self.augment_scale = tuple(augment_scale) if augment_scale else None
        self.augment_shift = float(augment_shift)

    def spec(self) -> TokenSpec:
        return TokenSpec(self.group_size * NUM_ATTRIBUTES, (CoordGroup("continuous", 3, scale=0.5),))

    def sample_points(self, splats: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Up to ``num_points`` Gaussians of an object in random order: (n, 14) float32.

        Without ``rng`` the choice is fixed (seed 0), so validation and probes see the same points.
        """
        splats = np.asarray(splats, dtype=np.float32)
        chooser = rng if rng is not None else np.random.default_rng(0)
        take = min(self.num_points, len(splats))
        return splats[chooser.choice(len(splats), take, replace=False)]

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        """One token per sampled Gaussian: values (n, 14), coords (n, 3) xyz; grouped in ``on_device``."""
        points = self.sample_points(sample["splats"], rng)
        if rng is not None and self.augment_scale is not None:
            factor = rng.uniform(*self.augment_scale)
            points[:, ATTRIBUTES["xyz"]] = (points[:, ATTRIBUTES["xyz"]] * factor
                                            + rng.uniform(-self.augment_shift, self.augment_shift, 3))
            points[:, ATTRIBUTES["scale"]] *= factor
        values = torch.from_numpy(points)
        return Tokens(values=values, coords=values[:, ATTRIBUTES["xyz"]].clone(), meta={"path": sample.get("path")})

    def grouping_space(self, values: Tensor, valid: Tensor) -> Tensor | None:
        """(B, P, F) per-object standardised ``group_by`` attributes, or None for plain xyz."""
        if self.group_by == ("xyz",):
            return None
        cols = torch.cat([values[..., ATTRIBUTES[a]] for a in self.group_by], dim=-1).float()  # [B, P, F]
        weight = valid[..., None].float()
        count = weight.sum(1, keepdim=True).clamp(min=1)
        mean = (cols * weight).sum(1, keepdim=True) / count
        std = (((cols - mean) * weight).square().sum(1, keepdim=True) / count).sqrt().clamp(min=1e-6)
        return (cols - mean) / std * weight

    def on_device(self, batch: TokenBatch) -> TokenBatch:
        """Per-Gaussian tokens (B, P, 14) -> group tokens: values (B, G, k * 14), coords (B, G, 3) centres.

        With ``attribute_targets: centred`` the batch also carries ``targets["splats"]``: the
        groups with each object's mean opacity, scale and colour subtracted (:func:`object_means`).
        Groups of objects with fewer than G sampled Gaussians are marked as padding (and zeroed).
        """
        values, valid = batch.values, ~batch.pad
        xyz = values[..., ATTRIBUTES["xyz"]]
        groups = group_points(xyz, valid, self.num_groups, self.group_size, self.grouping_space(values, valid))
        centres = gather_rows(xyz, groups.centres)  # [B, G, 3]
        members = gather_groups(values, groups.members)  # [B, G, k, 14]
        relative = torch.cat([members[..., ATTRIBUTES["xyz"]] - centres[:, :, None], members[..., 3:]], dim=-1)
        b, g = groups.empty.shape
        flat = relative.reshape(b, g, -1).masked_fill(groups.empty[..., None], 0.0)
        targets = {}
        if self.attribute_targets == "centred":
            centred = relative - object_means(relative, groups.empty)[:, None, None]
            targets["splats"] = centred.reshape(b, g, -1).masked_fill(groups.empty[..., None], 0.0)
        return TokenBatch(values=flat, coords=centres.masked_fill(groups.empty[..., None], 0.0), pad=groups.empty,
                          targets=targets, labels=batch.labels, meta=batch.meta)

    def target_streams(self) -> list[TargetStream]:
        """The hidden groups, object-centred (``splats``) or as they are (``values``), scored by
        :class:`GaussianGroupLoss` (no per-token normalisation: it would destroy the set geometry)."""
        name = "splats" if self.attribute_targets == "centred" else "values"
        return [TargetStream(name, dim=self.group_size * NUM_ATTRIBUTES, loss=self.loss, normalize=False)]

    def value_embedding(self, dim: int) -> nn.Module:
        return MiniPointNet(NUM_ATTRIBUTES, dim, self.embed_hidden, self.pooling)

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """D2 shape distribution (Osada et al., "Shape Distributions", 2002) plus attribute means.

        A histogram of all pairwise distances between the sampled Gaussians (32 bins over the
        unit sphere's diameter), then the mean opacity, scale, and colour.
        """
        points = self.sample_points(sample["splats"], None)
        xyz = torch.from_numpy(points[:, ATTRIBUTES["xyz"]])
        dist = torch.pdist(xyz).numpy()
        hist = np.histogram(dist, bins=D2_BINS, range=(0.0, 2.0))[0] / max(len(dist), 1)
        means = points[:, 3:7].mean(0), points[:, ATTRIBUTES["colour"]].mean(0)
        return np.concatenate([hist, *means]).astype(np.float32)

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        from omnissl_splat.viz import plot_splat_reconstructions

        predicted = predictions.get("values")
        if predicted is None:  # object-centred predictions: add back the object's means, as MAE's demo does
            means = object_means(batch.values.reshape(*batch.pad.shape, self.group_size, NUM_ATTRIBUTES), batch.pad)
            predicted = predictions["splats"] + means.repeat(1, self.group_size)[:, None]
        return plot_splat_reconstructions(batch, hidden, predicted, path)
