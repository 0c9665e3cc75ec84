"""The objective contract, and the masked-prediction family that MAE, SimMIM and their kin share.

:class:`Objective` is what every objective is: an ``nn.Module`` holding the encoder being
pre-trained, whose ``forward(batch, mask)`` returns a loss and metrics. Three optional
parts extend it:

* ``make_mask(batch, masker, generator)``: what the loop hands ``forward`` as ``mask``. The
  default calls the masker once, or ``masks_per_sample`` times (several masks per sample);
  an objective that must look at the data before masking (AttMask needs a teacher's
  attention) overrides it and calls the masker itself.
* ``after_step(step, total_steps)``: called by the loop after each optimiser step (an EMA
  teacher follows the student there). Not defined on the base, so the loop's
  ``hasattr`` check means "this objective has per-step state".
* ``reconstruct(batch, mask)``: predictions in the data's own units, for plots. Only
  :class:`MaskedPrediction` has it; the loop and the plots check ``hasattr``.

:class:`MaskedPrediction` adds target streams, per-stream heads, the hidden-token loss,
per-token normalised targets and ``reconstruct``. See docs/objectives.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import Tensor, nn

from omnissl.maskers.base import Mask
from omnissl.modality import Modality, TargetStream
from omnissl.tokens import TokenBatch, gather_rows


@dataclass
class ObjectiveOutput:
    """Result of one objective forward.

    Attributes:
        loss: scalar to minimise.
        metrics: floats to log (``loss``, and the terms that make it up).
        predictions: masked-prediction objectives only: per stream, (B, M, dim) predictions
            for ``mask.hidden_idx``.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    predictions: dict[str, Tensor] = field(default_factory=dict)


def normalize_per_token(target: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-patch normalised target: returns (normalised, mean, std) over the last dim."""
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True, unbiased=False) + eps).sqrt()
    return (target - mean) / std, mean, std


def repeat_batch(batch: TokenBatch, times: int) -> TokenBatch:
    """Each sample ``times`` times in a row (row ``b * times + j`` is copy ``j`` of sample ``b``),
    the order of ``repeat_interleave`` and of data2vec 2.0's cloned batches."""
    if times == 1:
        return batch

    def rep(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.repeat_interleave(times, dim=0)

    return replace(batch, values=rep(batch.values), coords=rep(batch.coords), pad=rep(batch.pad),
                   kinds=rep(batch.kinds), attn_bias=rep(batch.attn_bias),
                   targets={k: rep(v) for k, v in batch.targets.items()}, labels=rep(batch.labels),
                   meta=[m for m in batch.meta for _ in range(times)])


class Objective(nn.Module):
    """Base class of every objective: the encoder being pre-trained and a loss.

    Subclasses implement ``forward(batch, mask) -> ObjectiveOutput`` and may define
    ``after_step(step, total_steps)`` and ``reconstruct(batch, mask)`` (see the module docstring).

    Args:
        encoder: the encoder being pre-trained (kept as ``self.encoder`` for probes and export).

    Attributes:
        masks_per_sample: how many masks the default :meth:`make_mask` draws for each sample.
    """

    masks_per_sample: int = 1

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def make_mask(self, batch: TokenBatch, masker: Callable[..., Any], generator: torch.Generator | None) -> Any:
        """What the loop passes to ``forward`` as ``mask``, drawn with the step's ``generator``.

        With ``masks_per_sample`` M > 1, the masker masks :func:`repeat_batch` ``(batch, M)``: a
        (B * M, N) mask whose row ``b * M + j`` is the j-th mask of sample ``b``, each drawn
        independently (data2vec 2.0's several masks per sample). ``forward`` then sees the
        original batch and expands it the same way.
        """
        return masker(repeat_batch(batch, self.masks_per_sample), generator)

    def forward(self, batch: TokenBatch, mask: Any) -> ObjectiveOutput:
        raise NotImplementedError


def draw_mask(objective: nn.Module, masker: Callable[..., Any], batch: TokenBatch,
              generator: torch.Generator | None) -> Any:
    """The mask for one forward of ``objective``: its ``make_mask`` where it has one, else the
    masker's own (objectives written as plain ``nn.Module``s keep working)."""
    make = getattr(objective, "make_mask", None)
    return make(batch, masker, generator) if make is not None else masker(batch, generator)


class MaskedPrediction(Objective):
    """Objectives that predict hidden tokens' targets (MAE, SimMIM, masked atoms).

    Subclasses build heads with :meth:`make_heads` and score them with :meth:`hidden_loss`.

    Args:
        encoder: the encoder being pre-trained.
        modality: gives the target streams and their per-token losses.
        norm_target: normalise each hidden token's target by its own mean and std
            (for streams whose ``normalize`` is True).
    """

    def __init__(self, encoder: nn.Module, modality: Modality, norm_target: bool = False):
        super().__init__(encoder)
        self.streams: list[TargetStream] = modality.target_streams()
        self.norm_target = norm_target

    def stream_dim(self, stream: TargetStream) -> int:
        if stream.dim is not None:
            return stream.dim
        if stream.name == "values":
            return self.encoder.spec.value_dim
        raise ValueError(f"target stream {stream.name!r} must declare its dim")

    def make_heads(self, width: int) -> nn.ModuleDict:
        # Keys get a prefix: ModuleDict has methods named like common streams ("values").
        return nn.ModuleDict({f"to_{s.name}": nn.Linear(width, self.stream_dim(s)) for s in self.streams})

    def hidden_loss(self, batch: TokenBatch, mask: Mask, features: Tensor,
                    heads: nn.ModuleDict) -> ObjectiveOutput:
        """Score predictions for hidden tokens.

        Args:
            features: (B, M, width) decoder/encoder features at ``mask.hidden_idx``.
        """
        real = ~mask.hidden_pad  # [B, M]
        filler = bool(mask.hidden_pad.any())
        total = features.new_zeros((), dtype=torch.float32)
        metrics: dict[str, Tensor] = {}
        predictions: dict[str, Tensor] = {}
        for stream in self.streams:
            pred = heads[f"to_{stream.name}"](features)  # [B, M, P]
            predictions[stream.name] = pred
            target = gather_rows(batch.target(stream.name), mask.hidden_idx)  # [B, M, T]
            if self.norm_target and stream.normalize:
                target = normalize_per_token(target.float())[0]
            if filler:
                per_token = stream.loss(pred[real], target[real])  # [M_real]
            else:  # every row is a real hidden token: no boolean-index copies
                per_token = stream.loss(pred.flatten(0, 1), target.flatten(0, 1))
            value = per_token.float().mean() if per_token.numel() else pred.sum() * 0.0
            total = total + stream.weight * value
            if len(self.streams) > 1:
                metrics[f"loss_{stream.name}"] = value.detach()
        metrics["loss"] = total.detach()
        return ObjectiveOutput(total, metrics, predictions)

    def reconstruct(self, batch: TokenBatch, mask: Mask) -> dict[str, Tensor]:
        """Predictions scattered back to (B, N, dim) per stream, in the target's own units
        (per-token normalisation undone with the true token's mean and std, as MAE's demo does)."""
        out = self.forward(batch, mask)
        full: dict[str, Tensor] = {}
        for stream in self.streams:
            pred = out.predictions[stream.name].float()
            if self.norm_target and stream.normalize:
                target = gather_rows(batch.target(stream.name), mask.hidden_idx).float()
                _, mean, std = normalize_per_token(target)
                pred = pred * std + mean
            canvas = pred.new_zeros(batch.batch_size, batch.num_tokens + 1, pred.shape[-1])
            idx = mask.hidden_idx.masked_fill(mask.hidden_pad, batch.num_tokens)
            canvas.scatter_(1, idx[..., None].expand(-1, -1, pred.shape[-1]), pred)
            full[stream.name] = canvas[:, :-1]
        return full
