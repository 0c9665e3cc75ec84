"""Tokens, padding, the loss over real frames only, maskers and the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl.errors import DataError, RecipeError
from omnissl.maskers import RandomMasker
from omnissl.encoders import TokenEncoder
from omnissl.objectives.mae import MAE
from omnissl.tokens import collate_tokens
import omnissl_audio.plots as plots
from omnissl_audio import AudioModality, TimeFrequencyMasker
from omnissl_audio.modality import STREAM, VALID


def clip(frames: int, bins: int = 64, seed: int = 0) -> dict:
    return {"features": np.random.default_rng(seed).standard_normal((frames, bins)).astype(np.float32),
            "path": f"clip-{frames}.wav"}


def test_patch_tokens_follow_the_spec_and_the_time_frequency_grid() -> None:
    modality = AudioModality(target_frames=96, num_mel_bins=64, patch_size=[16, 16])
    tokens = modality.tokenize(clip(98), np.random.default_rng(0))
    tokens.validate(modality.spec())
    assert tokens.values.shape == (24, 256) and tokens.targets[VALID].shape == (24, 16)
    assert tokens.coords[:, 0].unique().tolist() == list(range(6))  # time index
    assert tokens.coords[:, 1].unique().tolist() == list(range(4))  # frequency index
    features = torch.from_numpy(clip(98)["features"][:96])
    first = features[:16, 16:32].reshape(-1)  # time patch 0, frequency band 1
    torch.testing.assert_close(modality.tokenize(clip(98), None).values[1], first)


def test_frame_tokens_span_the_whole_band() -> None:
    modality = AudioModality(target_frames=96, num_mel_bins=64, patch_size=[4, 64])
    tokens = modality.tokenize(clip(96), None)
    tokens.validate(modality.spec())
    assert tokens.values.shape == (24, 4 * 64) and tokens.coords[:, 1].eq(0).all()


def test_long_clips_are_cropped_at_random_in_training_and_from_the_start_otherwise() -> None:
    modality = AudioModality(target_frames=32, num_mel_bins=64, patch_size=[16, 16])
    sample = clip(200)
    fixed = modality.crop(sample, None)
    torch.testing.assert_close(fixed, torch.from_numpy(sample["features"][:32]))
    offsets = {int(np.flatnonzero((sample["features"] == modality.crop(sample, np.random.default_rng(s))[0].numpy())
                                  .all(1))[0]) for s in range(10)}
    assert len(offsets) > 1


def test_short_clips_make_fewer_tokens_and_padded_frames_never_count() -> None:
    """Clips of 96, 40 and 7 frames in one batch: padding is neither visible nor hidden, and
    changing padded frames (inside the 40-frame clip's last patch too) leaves the loss unchanged."""
    modality = AudioModality(target_frames=96, num_mel_bins=64, patch_size=[16, 16])
    with pytest.warns(UserWarning, match="clip-7.wav has 7 frames, fewer than one patch"):
        samples = [modality.tokenize(clip(n, seed=n), None) for n in (96, 40, 7)]
    assert [len(s) for s in samples] == [24, 12, 4]
    batch = modality.on_device(collate_tokens(samples))
    assert batch.pad.sum(1).tolist() == [0, 12, 20]
    assert batch.targets[STREAM].shape == (3, 24, 256 + 16)
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    assert not (mask.hidden & batch.pad).any()
    visible = torch.zeros_like(batch.pad)
    visible.scatter_(1, mask.visible_idx, ~mask.visible_pad)
    assert not (visible & batch.pad).any()

    torch.manual_seed(0)
    encoder = TokenEncoder(modality.spec(), modality, dim=32, depth=1, heads=2)
    objective = MAE(encoder, modality, decoder_dim=32, decoder_depth=1, decoder_heads=2).eval()
    loss = objective(batch, mask).loss
    spoiled = modality.on_device(collate_tokens(samples))
    spoiled.values[batch.pad] = 1e3  # padding tokens
    spoiled.targets[STREAM][batch.pad] = 1e3
    frame_pad = (batch.targets[STREAM][..., 256:] == 0).repeat_interleave(16, dim=-1) & ~batch.pad[..., None]
    assert frame_pad.sum() == 4 * 16 * (8 + 9)  # 4 bands x 16 bins x (8 padded frames of clip-40, 9 of clip-7)
    spoiled.targets[STREAM][..., :256][frame_pad] = 1e3  # padded frames inside real tokens
    torch.testing.assert_close(objective(spoiled, mask).loss, loss)


def test_loss_per_patch_normalisation_uses_real_frames_only() -> None:
    modality = AudioModality(target_frames=32, num_mel_bins=16, patch_size=[16, 16], norm_target=True)
    tokens = modality.tokenize(clip(20, bins=16), None)  # second patch: 4 real frames, 12 padded
    target = modality.on_device(collate_tokens([tokens])).targets[STREAM][0]
    real = tokens.values[1].view(16, 16)[:4]
    perfect = torch.zeros(2, 256)
    perfect[1].view(16, 16)[:4] = (real - real.mean()) / (real.var(unbiased=False) + 1e-6).sqrt()
    assert modality.loss(perfect, target)[1] < 1e-8


def test_time_frequency_masker_hides_whole_spans_and_bands() -> None:
    modality = AudioModality(target_frames=96, num_mel_bins=64, patch_size=[16, 16])
    batch = collate_tokens([modality.tokenize(clip(96), None), modality.tokenize(clip(50), None)])
    masker = TimeFrequencyMasker(time_ratio=0.3, time_span=1, freq_ratio=0.25, freq_span=1)
    mask = masker(batch, torch.Generator().manual_seed(3))
    assert not (mask.hidden & batch.pad).any()
    for b in range(2):
        real = ~batch.pad[b]
        hidden = mask.hidden[b][real]
        t, f = batch.coords[b][real].long().unbind(1)
        # A token is hidden exactly when its time span or its frequency band is wholly hidden.
        full_time = torch.stack([hidden[t == i].all() for i in t.unique()])
        full_band = torch.stack([hidden[f == j].all() for j in f.unique()])
        assert full_time.any() and full_band.any()
        assert torch.equal(hidden, full_time[t] | full_band[f])


def test_baseline_pools_log_mels_over_time() -> None:
    modality = AudioModality(target_frames=96, num_mel_bins=64, patch_size=[16, 16])
    sample = clip(120)
    features = modality.baseline_features(sample)
    np.testing.assert_allclose(features[:64], sample["features"][:96].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features[64:], sample["features"][:96].std(0), rtol=1e-4, atol=1e-6)


def test_bad_settings_and_mismatched_features_are_explained() -> None:
    with pytest.raises(RecipeError, match="must divide"):
        AudioModality(target_frames=100, num_mel_bins=64, patch_size=[16, 16])
    with pytest.raises(DataError, match="set modality.num_mel_bins"):
        AudioModality(target_frames=96, num_mel_bins=128).tokenize(clip(96, bins=64), None)


def test_visualiser_draws_frame_tokens_with_per_patch_targets_in_log_mel_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With norm_target, a prediction equal to each normalised true patch draws the original back."""
    modality = AudioModality(target_frames=32, num_mel_bins=16, patch_size=[4, 16], norm_target=True)
    batch = modality.on_device(collate_tokens([modality.tokenize(clip(n, bins=16, seed=n), None) for n in (32, 18)]))
    hidden = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0)).hidden
    values, weight = modality.loss.split(batch.targets[STREAM].flatten(0, 1))
    mean, std = modality.loss.moments(values, weight)
    perfect = ((values - mean) / std).view_as(batch.values)
    drawn: dict[str, list] = {}

    def capture(rows: list, names: list, titles: tuple, patch_frames: int, path: Path) -> Path:
        drawn["rows"], drawn["names"] = rows, names
        return path

    monkeypatch.setattr(plots, "plot_spectrograms", capture)
    modality.visualize(batch, hidden, {STREAM: perfect}, tmp_path / "r.png")
    monkeypatch.undo()
    for row in drawn["rows"]:
        np.testing.assert_allclose(row[2][:len(row[0])], row[0], atol=1e-4)  # reconstruction == original
        assert np.isnan(row[1]).any()  # hidden patches are blank in the encoder's view
    assert drawn["names"] == ["clip-32.wav", "clip-18.wav"]
    modality.visualize(batch, hidden, {STREAM: perfect}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
