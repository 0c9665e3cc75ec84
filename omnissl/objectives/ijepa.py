"""I-JEPA (Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture", CVPR 2023): predict, in latent space, the representations of target blocks from a
context block.

The student encoder sees the context block only. An EMA teacher (:class:`EMATeacher`, momentum
rising from ``momentum`` to 1) encodes every token, and its output, layer-normalised per token,
is the target. A narrow predictor (a small transformer of width ``pred_dim``) gets the context
features plus one mask token at each token of a target block (its coordinates' positional
encoding added, by the same :class:`~omnissl.layers.PositionEncoding` as the encoder) and predicts
the teacher's features there; each target block is predicted separately from the same context.

Everything is in token space, so any modality works: with the ``multiblock`` masker the context
and the K targets are blocks of coordinates (boxes on grids, neighbourhoods of atoms or points);
with a one-set masker (``random``, ``block``, ``span``, ``group``) the visible tokens are the
context and the hidden tokens one target block.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnissl.encoders.transformer import gather_layout, gather_tokens, project_bias
from omnissl.layers import KindEmbedding, PositionEncoding, TransformerStack, attention_mask, init_weights
from omnissl.maskers.base import Mask
from omnissl.maskers.multiblock import MultiBlockMask
from omnissl.modality import Modality
from omnissl.objectives.base import Objective, ObjectiveOutput
from omnissl.objectives.ema import EMATeacher
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch, TokenSpec

LatentLoss = Literal["l2", "smooth_l1"]


class Predictor(nn.Module):
    """Encoded context tokens plus mask tokens at query positions -> features at the queries.

    I-JEPA's predictor, and the light decoder of data2vec 2.0 here: the context features are
    projected to ``dim``, each query is a learned mask token, every token gets the positional
    encoding of its coordinates (and its identity kinds, and the pairwise attention prior where the
    modality has them), a transformer of ``depth`` blocks runs over context and queries together,
    and its outputs at the queries are projected to ``out_dim``. Tokens that are neither context
    nor query are not there; padding never attends nor is attended to.

    Args:
        spec: the modality's token spec (coordinate groups, kinds, bias channels).
        in_dim: width of the context features (the encoder's).
        dim: the predictor's width.
        depth: transformer blocks.
        heads: attention heads.
        out_dim: width of the predictions.
        mlp_ratio: MLP width relative to ``dim``.
    """

    def __init__(self, spec: TokenSpec, in_dim: int, dim: int, depth: int, heads: int, out_dim: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = PositionEncoding(spec.coords, dim)
        self.kinds = KindEmbedding(spec.kind_vocab, dim, spec.content_kinds) if spec.kind_vocab else None
        self.bias = nn.Linear(spec.bias_channels, heads) if spec.bias_channels > 1 else None
        self.stack = TransformerStack(dim, depth, heads, mlp_ratio)
        self.out = nn.Linear(dim, out_dim)
        for module in (self.embed, self.pos, self.stack, self.out):
            module.apply(init_weights)
        if self.kinds is not None:
            for table in self.kinds.tables:
                nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: TokenBatch, context: Tensor, context_idx: Tensor, context_pad: Tensor,
                query_idx: Tensor, query_pad: Tensor) -> Tensor:
        """Predict features at ``query_idx``.

        Args:
            batch: the tokens that the indices point into: B rows, or B / c rows when each sample
                comes c times in a row (the order of ``repeat_batch``; I-JEPA's K targets), so
                the batch need not be repeated (only positions are read from it, never values).
            context: (B, V, in_dim) encoded context tokens.
            context_idx, context_pad: (B, V) their positions, and True where filler.
            query_idx, query_pad: (B, Q) positions to predict, and True where filler.
        Returns:
            (B, Q, out_dim); rows at filler queries are meaningless.
        """
        v, q = context_idx.shape[1], query_idx.shape[1]
        idx = torch.cat([context_idx, query_idx], dim=1)  # [B, V+Q]
        pad = torch.cat([context_pad, query_pad], dim=1)
        coords, kinds, bias = gather_layout(batch, idx)
        x = self.embed(context)
        x = torch.cat([x, self.mask_token.to(x.dtype).expand(x.shape[0], q, -1)], dim=1)  # [B, V+Q, dim]
        x = x + self.pos(coords).to(x.dtype)
        if self.kinds is not None and kinds is not None:
            is_query = torch.arange(v + q, device=idx.device) >= v
            x = x + self.kinds(kinds, is_query.expand(idx.shape[0], -1))  # the queries' content kinds stay hidden
        bias = project_bias(bias, self.bias) if bias is not None else None
        mask = attention_mask(pad, bias, x.dtype)
        at = torch.arange(v, v + q, device=idx.device).expand(idx.shape[0], -1)
        return self.out(self.stack.forward_at(x, at, mask))  # [B, Q, out_dim]


def latent_loss(pred: Tensor, target: Tensor, pad: Tensor, kind: str = "l2") -> Tensor:
    """Mean over real tokens of the per-token loss, averaged over features.

    Args:
        pred, target: (..., T, D) predictions and targets.
        pad: (..., T) bool, True at filler tokens (never scored).
        kind: ``l2`` (squared error) or ``smooth_l1`` (Huber with beta 1, I-JEPA's released code).
    """
    real = ~pad
    pred, target = pred[real].float(), target[real].float()
    if not real.any():
        return pred.sum() * 0.0
    if kind == "l2":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    raise ValueError(f"objective.loss must be 'l2' or 'smooth_l1', got {kind!r}")


class IJEPA(Objective):
    """I-JEPA over token-space blocks of any modality.

    Args:
        encoder: the encoder being pre-trained (the student; the teacher is its EMA copy).
        modality: unused (the targets are the teacher's features); part of every objective's signature.
        pred_dim: the predictor's width (I-JEPA: 384).
        pred_depth: the predictor's transformer blocks (I-JEPA: 6 for ViT-B/L, 12 for ViT-H).
        pred_heads: the predictor's attention heads (I-JEPA: as the encoder's).
        momentum: the teacher's momentum at the first step, rising to 1 (I-JEPA: 0.996).
        loss: ``l2`` (the paper's squared L2 distance) or ``smooth_l1`` (I-JEPA's released code).
        mlp_ratio: the predictor's MLP width relative to ``pred_dim``.
    """

    def __init__(self, encoder: nn.Module, modality: Modality | None = None,
                 pred_dim: Annotated[int, Range(ge=1)] = 384, pred_depth: Annotated[int, Range(ge=1)] = 6,
                 pred_heads: Annotated[int, Range(ge=1)] = 12, momentum: Annotated[float, Range(ge=0, le=1)] = 0.996,
                 loss: LatentLoss = "l2", mlp_ratio: Annotated[float, Range(gt=0)] = 4.0):
        super().__init__(encoder)
        if loss not in ("l2", "smooth_l1"):
            raise ValueError(f"objective.loss must be 'l2' or 'smooth_l1', got {loss!r}")
        self.loss_kind = loss
        self.teacher = EMATeacher(encoder, momentum)
        self.predictor = Predictor(encoder.spec, encoder.dim, pred_dim, pred_depth, pred_heads, encoder.dim,
                                   mlp_ratio)

    @staticmethod
    def targets_of(mask: Mask) -> tuple[Tensor, Tensor]:
        """(B, K, T) target positions and filler flags: each target block of a
        :class:`MultiBlockMask`, else the hidden tokens as one block."""
        if isinstance(mask, MultiBlockMask):
            return mask.target_idx, mask.target_pad
        return mask.hidden_idx[:, None], mask.hidden_pad[:, None]

    @torch.no_grad()
    def teacher_features(self, batch: TokenBatch) -> Tensor:
        """The teacher's features of every token, layer-normalised per token (I-JEPA's targets): (B, N, dim)."""
        h = self.teacher(batch.values, batch.coords, batch.kinds, batch.pad, batch.attn_bias)
        return F.layer_norm(h.float(), (h.shape[-1],))

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        target_idx, target_pad = self.targets_of(mask)
        b, k, t = target_idx.shape
        values, coords, kinds, bias = gather_tokens(batch, mask.visible_idx)
        context = self.encoder(values, coords, kinds, mask.visible_pad, bias)  # [B, V, dim]: the context block
        # Each target block is predicted from the same context: K copies of each sample, in a row
        # (the predictor reads positions from the batch itself, without repeating it).
        pred = self.predictor(batch, context.repeat_interleave(k, 0), mask.visible_idx.repeat_interleave(k, 0),
                              mask.visible_pad.repeat_interleave(k, 0), target_idx.reshape(b * k, t),
                              target_pad.reshape(b * k, t))  # [B*K, T, dim]
        features = self.teacher_features(batch)  # [B, N, dim]
        target = torch.gather(features[:, None].expand(-1, k, -1, -1), 2,
                              target_idx[..., None].expand(-1, -1, -1, features.shape[-1]))  # [B, K, T, dim]
        loss = latent_loss(pred.reshape(b, k, t, -1), target, target_pad, self.loss_kind)
        return ObjectiveOutput(loss, {"loss": loss.detach()})

    def after_step(self, step: int, total_steps: int) -> None:
        """The teacher follows the student (EMA, momentum on the cosine schedule to 1)."""
        self.teacher.update(self.encoder, step, total_steps)
