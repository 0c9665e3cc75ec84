"""Supervised fine-tuning of a pre-trained encoder: the encoder plus a task head, trained end
to end through the same loop as pre-training.

The recipe is MAE's and BEiT's (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022, appendix A.3; Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022):
mean-pooled features, a LayerNorm and a linear head initialised near zero, layer-wise learning
rate decay (``optim.layer_decay``), drop path (``encoder.drop_path``), warm-up and cosine
(``optim``), label smoothing, and mixup / cutmix (Zhang et al., ICLR 2018; Yun et al., ICCV 2019).
L2-SP (Li, Grandvalet and Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018) optionally pulls the encoder toward its pre-trained
weights instead of toward zero — the Gaussian prior centred on the source model that Bayesian
transfer learning uses.

Mixup and cutmix work on tokens: mixup blends two samples' token values, cutmix replaces the
tokens inside a box of grid coordinates with the other sample's. For image patches this is
pixel mixup exactly (patchification is linear) and cutmix with patch-aligned boxes; any
modality whose samples have tokens at the same coordinates (fixed-size images, volumes,
windows of one montage) can use them, and the objective says so when its samples do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnissl.errors import RecipeError, TrainingError
from omnissl.maskers.base import Mask
from omnissl.modality import Modality
from omnissl.objectives.base import Objective, ObjectiveOutput
from omnissl.recipe import PoolName, Range
from omnissl.tokens import TokenBatch


class Finetune(Objective):
    """The encoder plus a classification or regression head, trained on the data set's labels.

    ``omnissl finetune RUN`` writes this section for you from the run and its data; set its
    options with overrides (``objective.mixup=0.8``).

    Args:
        encoder: the encoder to fine-tune (its weights are replaced by ``init`` when given).
        modality: the run's modality (its ``readout`` is the default pooling).
        task: ``classification`` (labels are class indices 0..num_outputs-1) or ``regression``.
        num_outputs: classes, or 1 for regression.
        init: a pre-trained encoder's weights (``checkpoints/encoder.safetensors`` of a run);
            null: train from the random initialisation (the from-scratch comparison).
        pool: how token features are pooled for the head; default: the modality's readout.
        label_smoothing: classification targets ``(1 - s) * one_hot + s / num_outputs``.
        mixup: Beta(mixup, mixup) concentration of mixup's blend; 0: off (MAE ViT-B: 0.8).
        cutmix: Beta(cutmix, cutmix) concentration of cutmix's area; 0: off (MAE ViT-B: 1.0).
        mix_prob: probability that a training batch is mixed at all.
        switch_prob: when both are on, the probability of cutmix instead of mixup.
        l2_sp: strength ``alpha`` of L2-SP, ``alpha / 2 * ||w - w_pretrained||^2`` over the encoder
            (its weight decay toward zero is then switched off); 0: off.
        label_fraction: fine-tune on this fraction of the labelled training samples, drawn
            per class (label-efficiency curves).
        target_mean: regression targets are standardised with this mean ...
        target_std: ... and this standard deviation (``omnissl finetune`` fills both in from
            the training split).
    """

    #: the loop trains on labelled training samples only, ``label_fraction`` of them
    uses_labels = True

    def __init__(self, encoder: nn.Module, modality: Modality,
                 task: Literal["classification", "regression"] = "classification",
                 num_outputs: Annotated[int, Range(ge=1)] = 2, init: str | None = None,
                 pool: PoolName | None = None, label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.1,
                 mixup: Annotated[float, Range(ge=0)] = 0.0, cutmix: Annotated[float, Range(ge=0)] = 0.0,
                 mix_prob: Annotated[float, Range(ge=0, le=1)] = 1.0,
                 switch_prob: Annotated[float, Range(ge=0, le=1)] = 0.5,
                 l2_sp: Annotated[float, Range(ge=0)] = 0.0,
                 label_fraction: Annotated[float, Range(gt=0, le=1)] = 1.0,
                 target_mean: Annotated[float, Range()] = 0.0, target_std: Annotated[float, Range(gt=0)] = 1.0):
        super().__init__(encoder)
        if task == "regression" and num_outputs != 1:
            raise RecipeError(f"objective.num_outputs must be 1 for regression, got {num_outputs}")
        if task == "classification" and num_outputs < 2:
            raise RecipeError(f"objective.num_outputs must be the number of classes (at least 2), got {num_outputs}")
        self.task, self.num_outputs = task, num_outputs
        self.pool = pool or getattr(modality, "readout", "mean")
        self.label_smoothing = label_smoothing if task == "classification" else 0.0
        self.mixup, self.cutmix, self.mix_prob, self.switch_prob = mixup, cutmix, mix_prob, switch_prob
        self.l2_sp, self.label_fraction = l2_sp, label_fraction
        self.target_mean, self.target_std = target_mean, target_std
        if init is not None:
            load_pretrained(encoder, Path(init))
        width = encoder.dim * (2 if self.pool == "mean_max" else 1)
        # MAE's fine-tuning head: a LayerNorm on the pooled features, a linear layer starting near 0.
        self.fc_norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, num_outputs)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)
        self.grid_columns = _grid_columns(encoder.spec)
        if l2_sp:
            # The starting point, rebuilt from ``init`` on resume: not part of the checkpoint.
            for name, p in encoder.named_parameters():
                self.register_buffer(_anchor(name), p.detach().clone(), persistent=False)
        # Encoder weights decay toward the pre-trained ones (L2-SP), not toward zero.
        self.weight_decay_exempt = ("encoder.",) if l2_sp else ()

    def logits(self, batch: TokenBatch, values: Tensor | None = None) -> Tensor:
        """(B, num_outputs) head outputs for whole samples (nothing hidden)."""
        features = self.encoder(batch.values if values is None else values, batch.coords, batch.kinds, batch.pad,
                                batch.attn_bias)
        return self.head(self.fc_norm(self.encoder.pool(features, batch.pad, self.pool)))

    def predict(self, batch: TokenBatch) -> Tensor:
        """Class probabilities (B, num_outputs), or regression values in the labels' units (B,)."""
        out = self.logits(batch).float()
        if self.task == "classification":
            return out.softmax(-1)
        return out[:, 0] * self.target_std + self.target_mean

    def forward(self, batch: TokenBatch, mask: Mask | None = None) -> ObjectiveOutput:
        if batch.labels is None:
            raise TrainingError("fine-tuning needs labels, and this batch has none")
        labels = batch.labels.to(batch.values.device)
        known = torch.isfinite(labels)
        targets = self.targets(labels.nan_to_num(0.0))  # (B, K) soft classes, or (B, 1) standardised values
        values = batch.values
        if self.training and (self.mixup or self.cutmix) and float(torch.rand(())) < self.mix_prob:
            values, targets, known = self.mix(batch, targets, known)
        logits = self.logits(batch, values).float()
        if self.task == "classification":
            per_sample = torch.sum(-targets * logits.log_softmax(-1), dim=-1)
        else:
            per_sample = (logits - targets).pow(2).squeeze(-1)
        weight = known.float()
        loss = (per_sample * weight).sum() / weight.sum().clamp(min=1.0)
        metrics = {"loss_task": loss.detach()}
        if self.l2_sp:
            drift = sum((p - getattr(self, _anchor(n))).pow(2).sum() for n, p in self.encoder.named_parameters())
            loss = loss + 0.5 * self.l2_sp * drift
            metrics["l2_sp"] = drift.detach()
        if self.task == "classification":
            right = (logits.argmax(-1) == targets.argmax(-1)).float()
            metrics["train_accuracy"] = (right * weight).sum() / weight.sum().clamp(min=1.0)
        metrics["loss"] = loss.detach()
        return ObjectiveOutput(loss, metrics)

    def targets(self, labels: Tensor) -> Tensor:
        if self.task == "regression":
            return ((labels.float() - self.target_mean) / self.target_std)[:, None]
        classes = labels.long()
        if bool(((classes < 0) | (classes >= self.num_outputs)).any()):
            bad = sorted(set(classes[(classes < 0) | (classes >= self.num_outputs)].tolist()))
            raise TrainingError(f"labels {bad[:5]} are not classes 0..{self.num_outputs - 1} "
                                f"(objective.num_outputs={self.num_outputs})")
        smooth = self.label_smoothing
        return F.one_hot(classes, self.num_outputs).float() * (1.0 - smooth) + smooth / self.num_outputs

    def mix(self, batch: TokenBatch, targets: Tensor, known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixup or cutmix of each sample with the batch reversed (as timm pairs them)."""
        if not (torch.equal(batch.pad, batch.pad.flip(0)) and torch.equal(batch.coords, batch.coords.flip(0))):
            raise RecipeError("objective.mixup / objective.cutmix blend samples token by token, so every sample "
                              "of a batch needs tokens at the same coordinates (images of one size, windows of "
                              "one montage); this data's samples differ: set objective.mixup=0 objective.cutmix=0")
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or float(torch.rand(())) < self.switch_prob)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        values, other = batch.values, batch.values.flip(0)
        if use_cutmix:
            inside = self.box(batch, lam)  # (N,) tokens taking the other sample's values
            values = torch.where(inside[None, :, None], other, values)
            real = (~batch.pad[0]).float()
            lam = 1.0 - float((inside.float() * real).sum() / real.sum().clamp(min=1.0))
        else:
            values = lam * values + (1.0 - lam) * other
        return values, lam * targets + (1.0 - lam) * targets.flip(0), known & known.flip(0)

    def box(self, batch: TokenBatch, lam: float) -> Tensor:
        """(N,) True for tokens inside a random box of grid coordinates covering about ``1 - lam``."""
        if not self.grid_columns:
            raise RecipeError("objective.cutmix cuts a box of grid coordinates, and this modality's tokens have "
                              "none; use objective.mixup instead")
        coords = batch.coords[0, :, self.grid_columns]  # (N, G); every sample has the same
        real = ~batch.pad[0]
        low, high = coords[real].amin(0), coords[real].amax(0) + 1
        extent = high - low
        side = extent * (1.0 - lam) ** (1.0 / len(self.grid_columns))  # the box's share of each axis
        centre = low + torch.rand(extent.shape, device=extent.device) * extent
        start, stop = (centre - side / 2).clamp(min=low), (centre + side / 2).clamp(max=high)
        return ((coords >= start) & (coords < stop)).all(-1)


def _grid_columns(spec) -> list[int]:
    columns, at = [], 0
    for group in spec.coords:
        if group.kind == "grid":
            columns += list(range(at, at + group.size))
        at += group.size
    return columns


def _anchor(name: str) -> str:
    return "l2sp_" + name.replace(".", "__")


def load_pretrained(encoder: nn.Module, path: Path) -> None:
    """Load a run's ``encoder.safetensors`` into ``encoder``, strictly, naming what does not fit."""
    from omnissl.train.checkpoint import load_weights

    if not path.is_file():
        raise RecipeError(f"objective.init: {path} does not exist (a run's checkpoints/encoder.safetensors, "
                          f"written when its training finished)")
    weights = load_weights(path)
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise RecipeError(f"objective.init: the weights in {path} do not fit this encoder ({first}); fine-tune "
                          f"with the run's own encoder section") from None
