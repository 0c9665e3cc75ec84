"""LeJEPA (Balestriero and LeCun, "LeJEPA: Provable and Scalable Self-Supervised Learning Without
the Heuristics", arXiv:2511.08544, 2025): a joint-embedding predictive architecture with no
teacher, no stop-gradient and no EMA.

Several views of each sample are encoded by the same encoder and pooled; a projector maps each
view to an embedding. The loss has two terms and one trade-off ``lamb``:

* prediction: every view's embedding is pulled toward the mean embedding of the sample's
  global views (squared error);
* SIGReg, sketched isotropic Gaussian regularisation: the embeddings of each view across the
  batch are projected on random unit directions, and each 1-D projection is compared with
  N(0, 1) by the Epps-Pulley statistic (the weighted L2 distance between characteristic
  functions). An isotropic Gaussian is the embedding distribution the paper proves best for
  downstream linear and k-NN probes, and the regulariser alone rules out collapse.

Views live in token space, so the objective works for any modality: with the ``multiblock``
masker the context block is the global view and each target block a local view; with a
one-set masker (``random``, ``block``, ``span``, ``group``) the visible and the hidden tokens are
two global views (two disjoint subsets of the sample).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from omnissl.encoders.transformer import gather_tokens
from omnissl.maskers.base import Mask
from omnissl.maskers.multiblock import MultiBlockMask
from omnissl.modality import Modality
from omnissl.objectives.base import Objective, ObjectiveOutput
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch

KNOTS = 17  # quadrature points of the characteristic-function integral on [0, T_MAX] (the paper's)
T_MAX = 3.0


def epps_pulley(x: Tensor, valid: Tensor | None = None) -> Tensor:
    """Epps-Pulley statistic of 1-D samples against N(0, 1), per column.

    ``n * integral |ecf(t) - exp(-t^2 / 2)|^2 exp(-t^2 / 2) dt`` over [-T_MAX, T_MAX], where ecf is
    the samples' empirical characteristic function; the integrand is even, so the trapezoid rule
    runs on [0, T_MAX] with doubled weights. About 1 for Gaussian samples whatever n, and of order n
    for samples that are not.

    Args:
        x: (..., N, S) samples: N draws of S univariate variables.
        valid: (..., N) bool, which draws count (all when None).
    Returns:
        (..., S) statistics; 0 where no draw is valid.
    """
    t = torch.linspace(0.0, T_MAX, KNOTS, device=x.device, dtype=x.dtype)
    gauss = torch.exp(-0.5 * t * t)
    step = T_MAX / (KNOTS - 1)
    weight = torch.full_like(t, 2.0 * step)
    weight[0] = weight[-1] = step
    weight = weight * gauss
    if valid is None:
        valid = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
    keep = valid.to(x.dtype)[..., None, None]  # [..., N, 1, 1]
    n = valid.sum(dim=-1).to(x.dtype)  # [...]
    angle = x[..., None] * t  # [..., N, S, KNOTS]
    real = (angle.cos() * keep).sum(dim=-3) / n.clamp(min=1)[..., None, None]  # [..., S, KNOTS]
    imag = (angle.sin() * keep).sum(dim=-3) / n.clamp(min=1)[..., None, None]
    gap = (real - gauss) ** 2 + imag ** 2
    return (gap @ weight) * n[..., None]


def sigreg(z: Tensor, directions: Tensor, valid: Tensor | None = None) -> Tensor:
    """SIGReg: the mean Epps-Pulley statistic of ``z`` projected on each direction.

    Args:
        z: (V, N, P) embeddings: V views of N samples.
        directions: (P, S) unit columns.
        valid: (V, N) bool, which embeddings count; views with fewer than two are left out.
    Returns:
        scalar, averaged over views and directions.
    """
    stats = epps_pulley(z @ directions, valid)  # [V, S]
    if valid is None:
        return stats.mean()
    used = (valid.sum(dim=-1) >= 2).to(stats.dtype)  # [V]
    return (stats.mean(dim=-1) * used).sum() / used.sum().clamp(min=1.0)


def random_directions(dim: int, count: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """(dim, count) directions drawn uniformly on the unit sphere."""
    a = torch.randn(dim, count, device=device, generator=generator)
    return a / a.norm(dim=0, keepdim=True)


class LeJEPA(Objective):
    """LeJEPA over token-space views of any modality.

    Args:
        encoder: the encoder being pre-trained.
        modality: unused (LeJEPA needs no targets from the modality); part of every objective's signature.
        lamb: the trade-off: ``loss = (1 - lamb) * prediction + lamb * SIGReg`` (paper: 0.05).
        proj_dim: size of the projected embedding that both terms see.
        proj_hidden: width of the projector's two hidden layers (paper: 2048).
        num_slices: random directions SIGReg projects on at each step (fresh every step).
    """

    def __init__(self, encoder: nn.Module, modality: Modality | None = None,
                 lamb: Annotated[float, Range(gt=0, lt=1)] = 0.05, proj_dim: Annotated[int, Range(ge=1)] = 128,
                 proj_hidden: Annotated[int, Range(ge=1)] = 2048, num_slices: Annotated[int, Range(ge=1)] = 256):
        super().__init__(encoder)
        if not 0.0 < lamb < 1.0:
            raise ValueError(f"lamb must be between 0 and 1 (exclusive), got {lamb}")
        self.lamb = float(lamb)
        self.num_slices = int(num_slices)
        # The minimal LeJEPA's projector: three linear layers, BatchNorm and ReLU between them.
        self.projector = nn.Sequential(
            nn.Linear(encoder.dim, proj_hidden), nn.BatchNorm1d(proj_hidden), nn.ReLU(),
            nn.Linear(proj_hidden, proj_hidden), nn.BatchNorm1d(proj_hidden), nn.ReLU(),
            nn.Linear(proj_hidden, proj_dim))

    def views(self, mask: Mask) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
        """Global and local views as (idx, pad) pairs of (B, T) token positions."""
        if isinstance(mask, MultiBlockMask):
            local = [(mask.target_idx[:, j], mask.target_pad[:, j]) for j in range(mask.num_targets)]
            return [(mask.visible_idx, mask.visible_pad)], local
        return [(mask.visible_idx, mask.visible_pad), (mask.hidden_idx, mask.hidden_pad)], []

    def embed_views(self, batch: TokenBatch, views: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Encode each view (one encoder pass for views of equal width) and mean-pool it.

        Returns:
            (V, B, dim) pooled features and (V, B) bool, True where the view has tokens.
        """
        width = max(idx.shape[1] for idx, _ in views)
        idx = torch.cat([nn.functional.pad(i, (0, width - i.shape[1])) for i, _ in views])  # [V*B, T]
        pad = torch.cat([nn.functional.pad(p, (0, width - p.shape[1]), value=True) for _, p in views])
        parts = [gather_tokens(batch, i) for i in idx.split(batch.batch_size)]
        values, coords = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        kinds = torch.cat([p[2] for p in parts]) if batch.kinds is not None else None
        bias = torch.cat([p[3] for p in parts]) if batch.attn_bias is not None else None
        valid = ~pad.all(dim=1)  # [V*B]
        # An empty view (a target of a one-token sample) is encoded as its first slot so that
        # attention has a key, and left out of the loss.
        shown = pad.clone()
        shown[:, 0] &= valid
        features = self.encoder(values, coords, kinds, shown, bias)  # [V*B, T, dim]
        pooled = self.encoder.pool(features, shown)  # [V*B, dim]
        return pooled.unflatten(0, (len(views), -1)), valid.unflatten(0, (len(views), -1))

    @staticmethod
    def prediction_loss(z: Tensor, valid: Tensor, num_global: int) -> Tensor:
        """Mean squared distance of every view's embedding to the mean of its sample's global views.

        Args:
            z: (V, B, P) embeddings, the global views first.
            valid: (V, B) bool, views that have tokens.
            num_global: how many of the V views are global.
        """
        keep = valid[..., None].to(z.dtype)
        centre = (z[:num_global] * keep[:num_global]).sum(0) / keep[:num_global].sum(0).clamp(min=1.0)  # [B, P]
        gap = ((z - centre) ** 2).mean(dim=-1)  # [V, B]
        return (gap * valid).sum() / valid.sum().clamp(min=1)

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        global_views, local_views = self.views(mask)
        pooled, valid = self.embed_views(batch, global_views)
        if local_views:
            local, local_valid = self.embed_views(batch, local_views)
            pooled, valid = torch.cat([pooled, local]), torch.cat([valid, local_valid])
        v, b = valid.shape
        z = torch.zeros(v, b, self.projector[-1].out_features, device=pooled.device)
        z[valid] = self.projector(pooled[valid]).float()  # [V, B, P]
        # Fresh directions every step while training (drawn from the loop's per-step seed); fixed
        # ones when evaluating, so validation losses compare across steps.
        generator = None if self.training else torch.Generator(device=z.device).manual_seed(0)
        directions = random_directions(z.shape[-1], self.num_slices, z.device, generator)
        with torch.autocast(z.device.type, enabled=False):  # cosines of bf16 projections would be noise
            prediction = self.prediction_loss(z, valid, len(global_views))
            regulariser = sigreg(z, directions, valid)
        loss = (1.0 - self.lamb) * prediction + self.lamb * regulariser
        metrics = {"loss": loss.detach(), "loss_prediction": prediction.detach(), "sigreg": regulariser.detach()}
        return ObjectiveOutput(loss, metrics)

