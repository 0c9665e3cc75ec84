"""Farthest-point sampling and k-nearest-neighbour grouping, batched in torch (Point-MAE).

Pang et al., "Masked Autoencoders for Point Cloud Self-supervised Learning" (ECCV 2022)
cut a point cloud into tokens by picking G centres with farthest-point sampling (FPS; Qi
et al., PointNet++, 2017) and taking each centre's k nearest neighbours, expressed
relative to the centre. Gaussian-MAE (Ma et al., "ShapeSplat", 2024) may measure those
distances in a normalised feature space instead of xyz ("feature grouping").

Everything here works on padded batches: ``valid`` (B, N) marks real points, and padding
is never chosen as a centre or a neighbour. The only Python loop is over the G FPS
iterations, each a vectorised update over all B x N points (the CUDA kernels of
PointNet++ run the same sequential recurrence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omnissl.tokens import gather_rows


def farthest_point_sample(points: Tensor, valid: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
    """Batched FPS starting from each object's first real point.

    Args:
        points: (B, N, F) positions (xyz or features) the distances are measured in.
        valid: (B, N) bool, False at padding.
        num_samples: G, centres per object.
    Returns:
        ``indices`` (B, G) long into N, and ``found`` (B, G) bool: False for the sample slots of
        objects with fewer than G real points (those slots repeat an earlier index).
    """
    b, n, f = points.shape
    points = points.float()
    # One contiguous (B, N) plane per axis: the per-iteration distance is then a few fused
    # elementwise passes instead of a strided reduction over a size-F last dimension.
    axes = points.permute(2, 0, 1).contiguous()  # [F, B, N]
    # Squared distance of every point to the chosen set; -1 at padding so argmax never picks it
    # (distances are >= 0, so the running minimum keeps the -1).
    nearest = torch.full((b, n), float("inf"), device=points.device).masked_fill(~valid, -1.0)
    dist, diff = torch.empty_like(nearest), torch.empty_like(nearest)
    current = valid.to(torch.uint8).argmax(dim=1)  # first real point of each object
    rows = torch.arange(b, device=points.device)
    indices = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    for i in range(num_samples):
        indices[:, i] = current
        centre = points[rows, current]  # [B, F]
        torch.sub(axes[0], centre[:, :1], out=dist).square_()
        for a in range(1, f):
            torch.sub(axes[a], centre[:, a:a + 1], out=diff)
            dist.addcmul_(diff, diff)
        torch.minimum(nearest, dist, out=nearest)
        current = nearest.argmax(dim=1)
    found = torch.arange(num_samples, device=points.device)[None] < valid.sum(1, keepdim=True)
    return indices, found


def knn(queries: Tensor, points: Tensor, valid: Tensor, k: int) -> Tensor:
    """Indices of each query's k nearest real points, nearest first.

    Args:
        queries: (B, G, F).
        points: (B, N, F).
        valid: (B, N) bool, False at padding.
        k: neighbours per query.
    Returns:
        (B, G, k) long into N. When an object has fewer than k real points, the missing
        neighbours repeat the nearest one, so padding is never returned.
    """
    dist = torch.cdist(queries.float(), points.float())  # [B, G, N]
    dist = dist.masked_fill(~valid[:, None, :], float("inf"))
    k_eff = min(k, points.shape[1])
    values, idx = dist.topk(k_eff, dim=-1, largest=False)  # [B, G, k_eff]
    idx = torch.where(torch.isinf(values), idx[..., :1], idx)
    if k_eff < k:
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, k - k_eff)], dim=-1)
    return idx


@dataclass
class Groups:
    """The result of :func:`group_points`.

    Attributes:
        centres: (B, G) long indices of the centre points.
        members: (B, G, k) long indices of each group's points, nearest to the centre first.
        empty: (B, G) bool, True for groups of objects with fewer than G real points.
    """

    centres: Tensor
    members: Tensor
    empty: Tensor


def group_points(xyz: Tensor, valid: Tensor, num_groups: int, group_size: int,
                 features: Tensor | None = None) -> Groups:
    """FPS centres plus kNN members, measured in xyz or in ``features`` (feature grouping).

    Args:
        xyz: (B, N, 3) positions.
        valid: (B, N) bool, False at padding.
        num_groups: G.
        group_size: k.
        features: optional (B, N, F) space for both FPS and kNN (Gaussian-MAE's feature grouping).
    """
    space = xyz if features is None else features
    centres, found = farthest_point_sample(space, valid, num_groups)
    members = knn(gather_rows(space, centres), space, valid, group_size)
    return Groups(centres, members, ~found)


def gather_groups(values: Tensor, members: Tensor) -> Tensor:
    """(B, N, A) per-point values at (B, G, k) member indices -> (B, G, k, A)."""
    b, g, k = members.shape
    return gather_rows(values, members.reshape(b, g * k)).reshape(b, g, k, values.shape[-1])
