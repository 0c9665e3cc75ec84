"""What every objective shares: target streams, per-token losses, normalised targets."""

from __future__ import annotations

from dataclasses import dataclass, field

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
        metrics: floats to log (``loss`` and one entry per target stream when several).
        predictions: per stream, (B, M, dim) predictions for ``mask.hidden_idx``.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    predictions: dict[str, Tensor] = field(default_factory=dict)


def normalize_per_token(target: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-patch normalised target: returns (normalised, mean, std) over the last dim."""
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True, unbiased=False) + eps).sqrt()
    return (target - mean) / std, mean, std


class Objective(nn.Module):
    """Base class. Subclasses build heads for ``self.streams`` and implement ``forward``.

    Args:
        encoder: the encoder being pre-trained (kept as ``self.encoder`` for probes and export).
        modality: gives the target streams and their per-token losses.
        norm_target: normalise each hidden token's target by its own mean and std
            (for streams whose ``normalize`` is True).
    """

    def __init__(self, encoder: nn.Module, modality: Modality, norm_target: bool = False):
        super().__init__()
        self.encoder = encoder
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

    def forward(self, batch: TokenBatch, mask: Mask) -> ObjectiveOutput:
        raise NotImplementedError
