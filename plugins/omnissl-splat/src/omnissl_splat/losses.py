"""The per-group loss of Gaussian-MAE: Chamfer-L2 on positions plus paired attribute losses.

A hidden group's target is an unordered set of k Gaussians, so positions are scored by the
symmetric Chamfer-L2 distance (Fan et al., "A Point Set Generation Network", CVPR 2017;
the reconstruction loss of Point-MAE, Pang et al., ECCV 2022). Gaussian-MAE (Ma et al.,
"ShapeSplat", 2024) scores the other Gaussian parameters by pairing each predicted Gaussian
with the target Gaussian nearest to it in xyz (the pairing the Chamfer term already
computes) and comparing the pair's attributes: L1 for opacity, scale and colour; for
rotation, 1 - |<q_pred, q_target>| of unit quaternions, which is zero for q and -q alike.

:func:`object_means` serves the modality's ``attribute_targets: centred``: opacity, scale and
colour targets minus the object's mean of each. An object-wide colour or Gaussian size is then
not worth reconstructing, so the encoder is not pushed to spend its features on it (with raw
targets it encodes both almost perfectly, and a k-NN probe finds same-coloured neighbours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl_splat.ply import ATTRIBUTES, NUM_ATTRIBUTES

LOSS_TERMS = ("xyz", "opacity", "scale", "rotation", "colour")
#: Attributes whose per-object mean :func:`object_means` takes (the rest get 0: xyz is
#: centre-relative already, and a mean quaternion is not a rotation).
CENTRED = ("opacity", "scale", "colour")


def object_means(groups: Tensor, empty: Tensor) -> Tensor:
    """Each object's mean opacity, scale and colour over the members of its real groups.

    Args:
        groups: (B, G, k, 14) grouped Gaussians.
        empty: (B, G) bool, True for padding groups.
    Returns:
        (B, 14): the means in their columns, 0 in the xyz and rotation columns.
    """
    weight = (~empty).to(groups.dtype)[..., None, None]  # [B, G, 1, 1]
    count = (weight.sum(dim=(1, 2)) * groups.shape[2]).clamp(min=1)  # [B, 1]
    means = (groups * weight).sum(dim=(1, 2)) / count  # [B, 14]
    keep = torch.zeros(NUM_ATTRIBUTES, dtype=torch.bool, device=groups.device)
    for name in CENTRED:
        keep[ATTRIBUTES[name]] = True
    return means * keep


def chamfer_l2(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric Chamfer-L2 between sets of points, and each prediction's nearest target.

    Args:
        pred: (M, k, 3) predicted sets.
        target: (M, k2, 3) target sets.
    Returns:
        ``distance`` (M,): mean squared distance from each predicted point to its nearest target
        plus the same from targets to predictions; ``nearest`` (M, k) long index into k2.
    """
    sq = torch.cdist(pred.float(), target.float()).square()  # [M, k, k2]
    to_target, nearest = sq.min(dim=2)
    to_pred = sq.min(dim=1).values
    return to_target.mean(1) + to_pred.mean(1), nearest


class GaussianGroupLoss:
    """Per-token loss of a hidden group of Gaussians, for :class:`omnissl.TargetStream`.

    Predictions and targets are flattened groups ``(M, k * 14)`` laid out as k Gaussians of
    ``omnissl_splat.ply.ATTRIBUTES`` (xyz relative to the group centre).

    Args:
        weights: weight of each term in ``LOSS_TERMS`` (``xyz`` is the Chamfer-L2 term);
            a term left out weighs 0.
    """

    def __init__(self, weights: dict[str, float]):
        unknown = set(weights) - set(LOSS_TERMS)
        if unknown:
            raise RecipeError(f"modality.loss_weights has unknown terms {sorted(unknown)}; "
                              f"valid terms: {', '.join(LOSS_TERMS)}")
        self.weights = {term: float(weights.get(term, 0.0)) for term in LOSS_TERMS}

    def terms(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each term's per-token value: (M, k*14) x2 -> {term: (M,)}."""
        m = pred.shape[0]
        pred = pred.float().reshape(m, -1, NUM_ATTRIBUTES)  # [M, k, 14]
        target = target.float().reshape(m, -1, NUM_ATTRIBUTES)
        chamfer, nearest = chamfer_l2(pred[..., ATTRIBUTES["xyz"]], target[..., ATTRIBUTES["xyz"]])
        paired = torch.gather(target, 1, nearest[..., None].expand(-1, -1, NUM_ATTRIBUTES))  # [M, k, 14]
        out = {"xyz": chamfer}
        for term in ("opacity", "scale", "colour"):
            cols = ATTRIBUTES[term]
            out[term] = (pred[..., cols] - paired[..., cols]).abs().mean(dim=(1, 2))
        q_pred = F.normalize(pred[..., ATTRIBUTES["rotation"]], dim=-1, eps=1e-6)
        q_true = paired[..., ATTRIBUTES["rotation"]]
        out["rotation"] = (1.0 - (q_pred * q_true).sum(-1).abs()).clamp(min=0.0).mean(1)
        return out

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """Weighted sum of the terms: (M, k*14) x2 -> (M,)."""
        terms = self.terms(pred, target)
        return sum(self.weights[name] * value for name, value in terms.items() if self.weights[name])
