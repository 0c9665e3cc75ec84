"""data2vec 2.0 (Baevski et al., "Efficient Self-supervised Learning with Contextualized Target
Representations for Vision, Speech and Language", ICML 2023).

An EMA teacher (:class:`EMATeacher`) encodes every token of a sample once; the target of each
token is the mean of the teacher's last ``top_k`` block outputs, each normalised first (so no
block dominates), a *contextualised* target: it depends on the whole sample, not on the token
alone. The student encodes the visible tokens only, under ``masks_per_sample`` different masks of
the same sample, which all share the one teacher pass (the paper's multi-mask training, the main
source of its efficiency). A light decoder fills mask tokens at the hidden positions and
regresses the targets there (squared error, hidden tokens only).

The decoder: data2vec 2.0 uses a small convolutional decoder over the image grid (1-D for
speech); a convolution needs a grid, and tokens here may be atoms or points, so the decoder is
the same light transformer as I-JEPA's predictor and MAE's decoder (:class:`Predictor`): encoded
visible tokens plus a mask token at each hidden token, each with its coordinates' positional
encoding, a few narrow blocks, a linear map to the encoder's width. It works for any coordinates
and respects padding and attention priors.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnissl.encoders.transformer import gather_tokens
from omnissl.errors import RecipeError
from omnissl.maskers.base import Mask
from omnissl.modality import Modality
from omnissl.objectives.base import Objective, ObjectiveOutput, repeat_batch
from omnissl.objectives.ema import EMATeacher
from omnissl.objectives.ijepa import Predictor, latent_loss
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch, gather_rows

TargetNorm = Literal["instance", "layer"]


def normalize_block(h: Tensor, pad: Tensor, how: str, eps: float = 1e-5) -> Tensor:
    """One block output normalised without learned parameters.

    Args:
        h: (B, N, D) block output.
        pad: (B, N) bool, True at padding (left out of the statistics).
        how: ``instance``: each feature over the sample's real tokens (instance norm over time,
            data2vec's for speech and images); ``layer``: each token over its features (layer norm
            without affine, data2vec's for text).
    """
    h = h.float()
    if how == "layer":
        return F.layer_norm(h, (h.shape[-1],), eps=eps)
    if how == "instance":
        keep = (~pad)[..., None].to(h.dtype)  # [B, N, 1]
        count = keep.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (h * keep).sum(dim=1, keepdim=True) / count
        var = (((h - mean) * keep) ** 2).sum(dim=1, keepdim=True) / count
        return (h - mean) / (var + eps).sqrt()
    raise ValueError(f"objective.target_norm must be 'instance' or 'layer', got {how!r}")


class Data2Vec2(Objective):
    """data2vec 2.0 over tokens with coordinates.

    Args:
        encoder: the encoder being pre-trained (the student; the teacher is its EMA copy).
        modality: unused (the targets are the teacher's features); part of every objective's signature.
        masks_per_sample: masks of each sample sharing one teacher pass (data2vec 2.0: 8 for
            speech and text, 16 for images).
        top_k: the teacher's last blocks whose outputs make the target (data2vec 2.0: 8 for speech,
            10 for ViT-B images, 12 for text); default: all of them.
        target_norm: how each block output is normalised before averaging: ``instance`` (over the
            sample's tokens, per feature: the paper's for images and speech) or ``layer`` (per
            token, over features: the paper's for text).
        momentum: the teacher's momentum at the first step, rising to 1 (data2vec 2.0: 0.9998 for
            ViT-B, over hundreds of thousands of steps; short runs need less).
        decoder_dim: the decoder's width.
        decoder_depth: the decoder's transformer blocks.
        decoder_heads: the decoder's attention heads.
    """

    def __init__(self, encoder: nn.Module, modality: Modality | None = None,
                 masks_per_sample: Annotated[int, Range(ge=1)] = 4, top_k: Annotated[int | None, Range(ge=1)] = None,
                 target_norm: TargetNorm = "instance", momentum: Annotated[float, Range(ge=0, le=1)] = 0.999,
                 decoder_dim: Annotated[int, Range(ge=1)] = 256, decoder_depth: Annotated[int, Range(ge=1)] = 2,
                 decoder_heads: Annotated[int, Range(ge=1)] = 4):
        super().__init__(encoder)
        depth = int(encoder.depth)
        self.top_k = depth if top_k is None else int(top_k)
        if not 1 <= self.top_k <= depth:
            raise RecipeError(f"objective.top_k={top_k}, but the encoder has {depth} blocks: use 1 to {depth}")
        if masks_per_sample < 1:
            raise RecipeError(f"objective.masks_per_sample must be >= 1, got {masks_per_sample}")
        if target_norm not in ("instance", "layer"):
            raise RecipeError(f"objective.target_norm must be 'instance' or 'layer', got {target_norm!r}")
        self.masks_per_sample = int(masks_per_sample)
        self.target_norm = target_norm
        self.teacher = EMATeacher(encoder, momentum)
        self.decoder = Predictor(encoder.spec, encoder.dim, decoder_dim, decoder_depth, decoder_heads, encoder.dim)

    @torch.no_grad()
    def targets(self, batch: TokenBatch) -> Tensor:
        """The teacher's contextualised targets of every token: the mean of its last ``top_k`` block
        outputs, each normalised: (B, N, dim), float32."""
        _, blocks = self.teacher(batch.values, batch.coords, batch.kinds, batch.pad, batch.attn_bias,
                                 return_blocks=self.top_k)
        return torch.stack([normalize_block(h, batch.pad, self.target_norm) for h in blocks]).mean(dim=0)

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        """``batch`` has B samples; ``mask`` has B * M rows, row ``b * M + j`` the j-th mask of sample b."""
        m = self.masks_per_sample
        if mask.hidden.shape[0] != batch.batch_size * m:
            raise ValueError(f"data2vec2 with masks_per_sample={m} needs a mask of {batch.batch_size * m} rows "
                             f"(from its make_mask), got {mask.hidden.shape[0]}")
        target = self.targets(batch).repeat_interleave(m, dim=0)  # one teacher pass for the M masks
        many = repeat_batch(batch, m)
        values, coords, kinds, bias = gather_tokens(many, mask.visible_idx)
        latent = self.encoder(values, coords, kinds, mask.visible_pad, bias)  # [B*M, V, dim]
        pred = self.decoder(many, latent, mask.visible_idx, mask.visible_pad, mask.hidden_idx, mask.hidden_pad)
        loss = latent_loss(pred, gather_rows(target, mask.hidden_idx), mask.hidden_pad, "l2")
        return ObjectiveOutput(loss, {"loss": loss.detach()})

    def after_step(self, step: int, total_steps: int) -> None:
        """The teacher follows the student (EMA, momentum on the cosine schedule to 1)."""
        self.teacher.update(self.encoder, step, total_steps)
