"""The audio modality: log-mel spectrograms cut into (time, frequency) patches.

AudioMAE (Huang et al., "Masked Autoencoders that Listen", NeurIPS 2022) and SSAST
(Gong et al., 2022) patchify a (1024 frames x 128 mel) spectrogram into 16 x 16
patches; ATST (Li et al., 2023) uses frame tokens spanning the whole band, which
here is ``patch_size: [4, num_mel_bins]``. Clips shorter than ``target_frames``
are not padded to full length: only patches that contain real frames become tokens,
so the core's collate pads the batch and the padding is never visible nor scored,
and the padded frames inside a clip's last, partial patch are left out of the loss
by :class:`ValidFramesMSE`. Workers emit each token's values and a (patch_frames,) flag
of real frames; :meth:`AudioModality.on_device` joins them into the scored stream batch-wise
(so the data loader never copies the values twice).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from omnissl import Modality, TokenBatch, Tokens, TokenSpec
from omnissl.errors import DataError, RecipeError
from omnissl.modality import TargetStream
from omnissl.recipe import Range
from omnissl.tokenizers import GridPatchifier

STREAM = "spectrogram"
VALID = "frame_valid"


class ValidFramesMSE:
    """Per-token MSE over the frames of a patch that are real, not padding.

    The stream's target is ``[values (D), frame_valid (patch_frames)]``; each frame's flag
    covers its ``patch_bins`` entries of the (time, frequency) patch, flattened time-major.
    Called as ``loss(pred (M, D), target (M, D + patch_frames)) -> (M,)``.

    Args:
        patch_frames, patch_bins: the patch shape.
        norm_target: normalise each target patch by the mean and std of its real entries
            (MAE's ``norm_pix_loss``, on in AudioMAE's pre-training).
    """

    def __init__(self, patch_frames: int, patch_bins: int, norm_target: bool = False):
        self.patch_frames = patch_frames
        self.patch_bins = patch_bins
        self.norm_target = norm_target

    def split(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """(M, D + patch_frames) -> values (M, D) and per-entry weights (M, D) of 1 (real) or 0 (padding)."""
        dim = self.patch_frames * self.patch_bins
        return target[:, :dim].float(), target[:, dim:].float().repeat_interleave(self.patch_bins, dim=1)

    def moments(self, values: Tensor, weight: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
        """Mean and std of each patch's real entries: (M, 1) each."""
        count = weight.sum(dim=1, keepdim=True).clamp_min(1.0)
        mean = (values * weight).sum(dim=1, keepdim=True) / count
        var = ((values - mean).pow(2) * weight).sum(dim=1, keepdim=True) / count
        return mean, (var + eps).sqrt()

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        values, weight = self.split(target)
        if self.norm_target:
            mean, std = self.moments(values, weight)
            values = (values - mean) / std
        return ((pred.float() - values).pow(2) * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


class AudioModality(Modality):
    """Normalised log-mel features (from an audio data set) as 2-D patch tokens.

    Samples are ``{"features": (frames, num_mel_bins) float, "path": str}``. Token coordinates
    are the (time, frequency) grid index of the patch (one ``grid`` group of size 2), so
    ``span`` maskers use ``axis: 0`` for time and ``axis: 1`` for frequency.

    Args:
        target_frames: frames fed to the model (AudioMAE: 1024 = 10.24 s); longer clips are
            cropped (at random during training, from the start otherwise), shorter ones are not padded.
        num_mel_bins: mel bins of the features; must match the data set's.
        patch_size: (frames, bins) of each patch; ``[4, num_mel_bins]`` gives ATST's frame tokens.
        norm_target: score each hidden patch normalised by its own real entries' mean and std
            (AudioMAE's ``norm_pix_loss``); the objective's ``norm_target`` must stay false, as it
            would count padded frames.
    """

    name = "audio"

    def __init__(self, target_frames: Annotated[int, Range(ge=1)] = 1024,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128,
                 patch_size: Annotated[list[int], Range(ge=1)] = (16, 16),
                 norm_target: bool = False):
        if len(patch_size) != 2:
            raise RecipeError(f"modality.patch_size must be [frames, bins], got {list(patch_size)}")
        self.patch_frames, self.patch_bins = int(patch_size[0]), int(patch_size[1])
        if num_mel_bins % self.patch_bins or target_frames % self.patch_frames:
            raise RecipeError(f"modality.patch_size {list(patch_size)} must divide "
                              f"[target_frames, num_mel_bins] = [{target_frames}, {num_mel_bins}]")
        self.target_frames = int(target_frames)
        self.num_mel_bins = int(num_mel_bins)
        self.patchifier = GridPatchifier((self.patch_frames, self.patch_bins), channels=1)
        self.loss = ValidFramesMSE(self.patch_frames, self.patch_bins, norm_target)

    def spec(self) -> TokenSpec:
        return TokenSpec(self.patchifier.value_dim, (self.patchifier.coord_group,))

    def target_streams(self) -> list[TargetStream]:
        # Per-patch normalisation, when wanted, happens in the loss over real frames only.
        return [TargetStream(STREAM, dim=self.patchifier.value_dim, loss=self.loss, normalize=False)]

    def crop(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tensor:
        """(frames, bins) features cut to at most ``target_frames`` frames."""
        features = torch.as_tensor(np.asarray(sample["features"], dtype=np.float32))
        if features.ndim != 2 or features.shape[1] != self.num_mel_bins:
            raise DataError(f"{sample.get('path', 'a sample')}: features have shape {tuple(features.shape)}, "
                            f"expected (frames, {self.num_mel_bins}); set modality.num_mel_bins to the "
                            f"data set's num_mel_bins")
        extra = features.shape[0] - self.target_frames
        offset = int(rng.integers(0, extra + 1)) if extra > 0 and rng is not None else 0
        return features[offset:offset + self.target_frames]

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        features = self.crop(sample, rng)  # [T, F]
        frames = features.shape[0]
        length = math.ceil(frames / self.patch_frames) * self.patch_frames  # whole patches only
        canvas = features
        if length > frames:  # zero-fill the last, partial patch
            canvas = features.new_zeros(length, self.num_mel_bins)
            canvas[:frames] = features
        valid = torch.zeros(length)
        valid[:frames] = 1.0
        if frames < self.patch_frames:
            warnings.warn(f"{sample.get('path', 'a clip')} has {frames} frames, fewer than one patch of "
                          f"{self.patch_frames}: it becomes one token per band, its padded frames left out of the loss")
        tokens = self.patchifier(canvas[None])  # values [N, D], coords [N, 2] (time index, frequency index)
        bands = self.num_mel_bins // self.patch_bins
        tokens.targets[VALID] = valid.view(-1, self.patch_frames).repeat_interleave(bands, 0)  # [N, patch_frames]
        tokens.meta = {"path": sample.get("path"), "frames": frames}
        return tokens

    def on_device(self, batch: TokenBatch) -> TokenBatch:
        """Join values (B, N, D) and frame flags (B, N, patch_frames) into the scored stream
        (B, N, D + patch_frames), which :class:`ValidFramesMSE` reads."""
        targets = {STREAM: torch.cat([batch.values, batch.targets[VALID].to(batch.values.dtype)], dim=-1)}
        return replace(batch, targets=targets)

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Log-mels pooled over time: mean and standard deviation of each bin, (2 * num_mel_bins,)."""
        features = self.crop(sample, None)
        return torch.cat([features.mean(0), features.std(0, unbiased=False)]).numpy()

    def spectrogram(self, values: Tensor, coords: Tensor, pad: Tensor) -> np.ndarray:
        """One sample's (N, D) patch values back to a (frames, bins) array (NaN where no token)."""
        rows = int(coords[~pad, 0].max().item()) + 1 if (~pad).any() else 1
        out = np.full((rows * self.patch_frames, self.num_mel_bins), np.nan, dtype=np.float32)
        for value, (t, f) in zip(values[~pad].float(), coords[~pad].long().tolist()):
            out[t * self.patch_frames:(t + 1) * self.patch_frames,
                f * self.patch_bins:(f + 1) * self.patch_bins] = value.view(self.patch_frames, self.patch_bins).numpy()
        return out

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        """One row per clip: original, what the encoder saw (hidden patches blank), reconstruction."""
        from omnissl_audio.plots import plot_spectrograms

        masked = batch.values.masked_fill(hidden[..., None], float("nan"))
        pred = predictions[STREAM].float()  # [B, N, D]
        if self.loss.norm_target:  # back to log-mel units with each true patch's own moments, as MAE's demo
            values, weight = self.loss.split(batch.targets[STREAM].flatten(0, 1))
            mean, std = self.loss.moments(values, weight)
            pred = pred * std.view(*pred.shape[:2], 1) + mean.view(*pred.shape[:2], 1)
        pasted = torch.where(hidden[..., None], pred.to(batch.values.dtype), batch.values)
        rows = [[self.spectrogram(v[b], batch.coords[b], batch.pad[b]) for v in (batch.values, masked, pasted)]
                for b in range(batch.batch_size)]
        names = ["/".join(Path(str(meta.get("path") or f"clip {b}")).parts[-2:])
                 for b, meta in enumerate(batch.meta)]
        return plot_spectrograms(rows, names, ("original", "masked (encoder input)", "reconstruction"),
                                 self.patch_frames, path)
