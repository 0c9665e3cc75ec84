"""The modality interface: what a plugin implements to bring a new kind of data.

A modality turns a data set's sample dicts into :class:`Tokens`, names the
target streams an objective predicts for hidden tokens (with their per-token
losses), and optionally draws reconstructions and supplies a classical
baseline for probes. Everything else (masking, encoders, objectives, the
loop, probes, checkpoints) comes from the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from omnissl.tokens import TokenBatch, Tokens, TokenSpec, collate_tokens


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per token: (num_tokens, dim) x2 -> (num_tokens,)."""
    return (pred.float() - target.float()).pow(2).mean(dim=-1)


@dataclass
class TargetStream:
    """One thing an objective predicts for each hidden token.

    Attributes:
        name: ``"values"`` (the token values) or a key of ``Tokens.targets``.
        dim: output size of the prediction head; None means the target's own size.
        loss: per-token loss ``loss(pred (M, dim), target (M, T)) -> (M,)``; MSE by default.
            Modalities override it where MSE is wrong (Chamfer for point groups,
            cross-entropy for element classes).
        weight: weight of this stream in the total loss.
        normalize: whether the objective's ``norm_target`` option (per-token
            mean/std normalisation, MAE's ``norm_pix_loss``) applies to this stream.
    """

    name: str = "values"
    dim: int | None = None
    loss: Callable[[Tensor, Tensor], Tensor] = mse_loss
    weight: float = 1.0
    normalize: bool = True


class Modality:
    """Base class of modalities. Subclasses set ``name`` and implement ``spec`` and ``tokenize``.

    The constructor receives the recipe's ``modality`` options as keyword arguments.
    """

    name: str = "modality"
    #: Set True when ``on_device`` only rescales or adds targets, so ``tokenize`` already
    #: makes tokens of the spec's shapes and the loader checks each batch against it (a
    #: modality whose ``on_device`` regroups tokens is checked after ``on_device`` only).
    on_device_keeps_spec: bool = False
    #: How one sample's token features become one vector when nothing else is asked (probes,
    #: ``run_features``, ``load_encoder``, fine-tuning heads): ``mean`` (MAE's readout), ``max``
    #: or ``mean_max`` (Point-MAE's: mean and max concatenated). ``probe.pool`` overrides it.
    readout: str = "mean"

    def spec(self) -> TokenSpec:
        """The :class:`TokenSpec` every sample's tokens follow."""
        raise NotImplementedError

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        """Turn one sample dict into tokens.

        Args:
            sample: what the data set's ``__getitem__`` returned.
            rng: a generator for random augmentation, seeded by the trainer from
                (seed, epoch, index) so runs and resumes are reproducible; None
                means no augmentation (validation, probes, plots).
        """
        raise NotImplementedError

    def tokenize_batch(self, dataset: Any, indices: Sequence[int], seeds: Sequence[int | None]) -> TokenBatch:
        """Read and tokenise a whole batch at once (optional, for speed).

        Override it when per-sample Python work dominates data loading: the modality
        knows its plugin's data sets, so it can read a batch in one pass (slicing a
        memory map straight into the batch, say) and tokenise with tensor ops. For a data
        set it does not know, fall back to this default: ``dataset[i]``, ``tokenize``, pad.

        Args:
            dataset: the data set.
            indices: the batch's samples, sorted (a batch is a set, and sorted reads are
                contiguous on disk).
            seeds: one augmentation seed per sample, None for no augmentation; use
                ``np.random.default_rng(seed)`` so both paths draw the same augmentation.
        Returns:
            what :func:`collate_tokens` makes of ``tokenize`` on each sample; the core fills
            in ``labels``.
        """
        return collate_tokens([self.tokenize(dataset[i], None if seed is None else np.random.default_rng(seed))
                               for i, seed in zip(indices, seeds)])

    def target_streams(self) -> list[TargetStream]:
        """What objectives predict for hidden tokens; by default the values with MSE."""
        return [TargetStream("values")]

    def value_embedding(self, dim: int) -> nn.Module | None:
        """A module mapping (B, N, value_dim) values to (B, N, dim) embeddings, or None
        for the encoder's default linear layer (a mini-PointNet for point groups, say)."""
        return None

    def on_device(self, batch: TokenBatch) -> TokenBatch:
        """Last step of tokenisation, run on the training device after collation
        (for work that is cheaper batched on a GPU: scaling, spectra, grouping). Identity by
        default. Each batch passes through once, straight from the loader (training,
        validation, probes, plots), so it may reuse the batch's tensors in place: on the CPU,
        where ``to(device)`` copies nothing, an out-of-place pass costs a fresh allocation."""
        return batch

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray | None:
        """The classical baseline's feature vector for a sample (flattened pixels,
        fingerprints, pooled log-mels), or None when the modality has none."""
        return None

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path | None:
        """Draw originals and reconstructions to a PNG at ``path``.

        Args:
            batch: a few validation samples.
            hidden: (B, N) bool, the tokens the model did not see.
            predictions: per stream, (B, N, dim) predictions (valid where ``hidden``).
        Returns:
            The path written, or None when the modality draws nothing.
        """
        return None


def unpatchify_values(batch: TokenBatch, predictions: Tensor, hidden: Tensor) -> Tensor:
    """Values with hidden tokens replaced by predictions: (B, N, D)."""
    return torch.where(hidden[..., None], predictions.to(batch.values.dtype), batch.values)
