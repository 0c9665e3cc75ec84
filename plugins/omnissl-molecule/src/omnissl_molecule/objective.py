"""Masked atoms + 3-D denoising (Uni-Mol), optionally over blended 2-D/3-D relations (MoleBLEND).

* Uni-Mol (Zhou et al., "Uni-Mol: A Universal 3D Molecular Representation Learning
  Framework", ICLR 2023): hide atoms, add uniform noise to the hidden atoms' coordinates,
  recompute the distance relations from the noisy coordinates, then predict the hidden
  atoms' elements (cross-entropy), their clean coordinates and the clean pair distances.
* MoleBLEND (Yu et al., "Multimodal Molecular Pretraining via Modality Blending", ICLR 2024):
  each atom pair shows either its 2-D relation (path length, bond) or its 3-D one
  (distance); the model predicts the 3-D distance where it saw the 2-D relation and the
  shortest path where it saw the 3-D one.

Runs as an MAE (drop mode): the encoder sees the visible atoms only; the decoder sees every
atom (hidden ones as mask tokens at their noisy positions) with the noisy relations. Through
``MAE`` it is a :class:`~omnissl.objectives.MaskedPrediction`: the element stream and its head,
the hidden-atom loss and ``reconstruct`` come from there; the coordinate and pair heads are its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnissl.errors import RecipeError
from omnissl.maskers.base import Mask
from omnissl.modality import Modality
from omnissl.objectives import MAE, ObjectiveOutput
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch, gather_rows
from omnissl_molecule.relations import RelationChannels


class PairHead(nn.Module):
    """Symmetric pair predictions from token features: MLP(h_i * h_j, h_i + h_j).

    Args:
        width: token feature size.
        out: outputs per pair.
    """

    def __init__(self, width: int, out: int):
        super().__init__()
        self.product = nn.Linear(width, width)
        self.total = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, out)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, width) -> (B, N, N, out)."""
        pair = self.product(x[:, :, None] * x[:, None]) + self.total(x[:, :, None] + x[:, None])
        return self.out(F.gelu(pair))


class MoleculeDenoisingMAE(MAE):
    """Uni-Mol's masked atoms and coordinate denoising, with MoleBLEND's relation blending as an option.

    Args:
        encoder: the encoder (built for the molecule modality).
        modality: must be the ``molecule`` modality (it supplies the relation layout).
        decoder_dim, decoder_depth, decoder_heads, mlp_ratio: the MAE decoder.
        coord_noise: hidden atoms' coordinates move by uniform noise in [-coord_noise, coord_noise] Å
            (Uni-Mol: 1 Å); 0 disables denoising.
        coord_weight: weight of the clean-coordinate loss (smooth L1 in Å, hidden atoms).
        distance_weight: weight of the clean-distance loss (smooth L1 in Å, pairs with a hidden
            atom; with ``relations="blend"``, also pairs that showed their 2-D relation).
        relations: ``"both"`` shows every pair's 2-D and 3-D relations; ``"blend"`` shows one of
            them per pair (MoleBLEND).
        p_three_d: with ``"blend"``, the probability that a pair shows its 3-D relation.
        path_weight: with ``"blend"``, weight of the shortest-path cross-entropy on pairs that
            showed their 3-D relation.
    """

    def __init__(self, encoder: nn.Module, modality: Modality, decoder_dim: Annotated[int, Range(ge=1)] = 256,
                 decoder_depth: Annotated[int, Range(ge=1)] = 4,
                 decoder_heads: Annotated[int, Range(ge=1)] = 8, mlp_ratio: Annotated[float, Range(gt=0)] = 4.0,
                 coord_noise: Annotated[float, Range(ge=0)] = 1.0,
                 coord_weight: Annotated[float, Range(ge=0)] = 1.0,
                 distance_weight: Annotated[float, Range(ge=0)] = 1.0,
                 relations: Literal["both", "blend"] = "both", p_three_d: Annotated[float, Range(ge=0, le=1)] = 0.5,
                 path_weight: Annotated[float, Range(ge=0)] = 1.0):
        relation_channels = getattr(modality, "relations", None)
        if not isinstance(relation_channels, RelationChannels):
            raise RecipeError(f"objective molecule_denoising needs the molecule modality, not {modality.name!r}")
        if relations not in ("both", "blend"):
            raise RecipeError(f"objective.relations must be 'both' or 'blend', got {relations!r}")
        if coord_noise < 0 or not 0.0 <= p_three_d <= 1.0:
            raise RecipeError("objective.coord_noise must be >= 0 and objective.p_three_d in [0, 1]")
        super().__init__(encoder, modality, decoder_dim, decoder_depth, decoder_heads, mlp_ratio, norm_target=False)
        self.channels = relation_channels
        self.coord_noise = coord_noise
        self.coord_weight = coord_weight
        self.distance_weight = distance_weight
        self.relations = relations
        self.p_three_d = p_three_d
        self.path_weight = path_weight
        self.coord_head = nn.Linear(decoder_dim, 3)
        self.predicts_pairs = coord_noise > 0 or relations == "blend"
        self.pair_head = PairHead(decoder_dim, 1 + relation_channels.num_path) if self.predicts_pairs else None

    def corrupt(self, batch: TokenBatch, mask: Mask) -> tuple[TokenBatch, Tensor]:
        """Noise on hidden atoms of 3-D molecules, relations recomputed, then blended if asked.

        Returns:
            (corrupted batch, shows_3d (B, N, N) bool: pairs whose 3-D group the model saw).
        """
        known = batch.attn_bias[..., self.channels.known] > 0  # [B, N, N]
        coords = batch.coords
        if self.coord_noise > 0:
            noise = (torch.rand_like(coords) * 2 - 1) * self.coord_noise  # [B, N, 3]
            has_3d = known.any(dim=2)  # [B, N]: atoms of molecules with a conformer
            coords = coords + noise * (mask.hidden & has_3d)[..., None].to(coords.dtype)
        relations = self.channels.with_coords(batch.attn_bias, coords)
        shows_3d = known
        if self.relations == "blend":
            relations, shows_3d = self.channels.blend(relations, batch.pad, p_three_d=self.p_three_d)
        return replace(batch, coords=coords, attn_bias=relations), shows_3d

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        noisy, shows_3d = self.corrupt(batch, mask)
        latent = self.forward_encoder(noisy, mask)  # [B, V, De]
        features = self.forward_decoder(noisy, mask, latent, all_tokens=True)  # [B, N, Dd]: pair head needs all
        out = self.hidden_loss(batch, mask, gather_rows(features, mask.hidden_idx), self.heads)
        out.metrics["loss_element"] = out.loss.detach()
        real = ~batch.pad
        pairs = real[:, :, None] & real[:, None]  # [B, N, N]
        known = batch.attn_bias[..., self.channels.known] > 0
        total = out.loss
        if self.coord_noise > 0:
            atoms = mask.hidden & known.any(dim=2)
            pred = noisy.coords + self.coord_head(features).float()  # [B, N, 3]
            coord_loss = _masked_mean(F.smooth_l1_loss(pred, batch.coords.float(), reduction="none").mean(-1), atoms)
            total = total + self.coord_weight * coord_loss
            out.metrics["loss_coords"] = coord_loss.detach()
        if self.pair_head is not None:
            pair_pred = self.pair_head(features).float()  # [B, N, N, 1 + num_path]
            touched = mask.hidden[:, :, None] | mask.hidden[:, None]
            if self.relations == "blend":
                touched = touched | ~shows_3d  # pairs that showed their 2-D relation
            clean = torch.cdist(batch.coords.float(), batch.coords.float())  # [B, N, N]
            dist_loss = _masked_mean(F.smooth_l1_loss(pair_pred[..., 0], clean, reduction="none"),
                                     pairs & known & touched)
            total = total + self.distance_weight * dist_loss
            out.metrics["loss_distance"] = dist_loss.detach()
        if self.relations == "blend":
            path_class = batch.attn_bias[..., :self.channels.num_path].argmax(-1)  # [B, N, N]
            path_ce = F.cross_entropy(pair_pred[..., 1:].permute(0, 3, 1, 2), path_class, reduction="none")
            path_loss = _masked_mean(path_ce, pairs & shows_3d)
            total = total + self.path_weight * path_loss
            out.metrics["loss_path"] = path_loss.detach()
        out.loss = total
        out.metrics["loss"] = total.detach()
        return out


def _masked_mean(values: Tensor, where: Tensor) -> Tensor:
    """Mean of ``values`` where ``where`` is True; 0 (with a gradient path) when nothing is selected."""
    weight = where.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)
