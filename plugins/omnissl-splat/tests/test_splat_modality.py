"""Tokens: shapes against spec(), padding never visible nor scored, embedding, baseline, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.maskers.random import RandomMasker
from omnissl.objectives.mae import MAE
from omnissl.encoders.transformer import TokenEncoder
from omnissl.errors import RecipeError
from omnissl_splat.datasets import SplatFolder
from omnissl_splat.modality import SplatModality


@pytest.fixture()
def folder(splat_shapes_dir: Path, tmp_path: Path) -> SplatFolder:
    return SplatFolder(str(splat_shapes_dir), cache_dir=str(tmp_path))


def small_batch(modality: SplatModality, folder: SplatFolder, short: int | None = None):
    samples = [folder[i] for i in range(4)]
    if short is not None:  # an object with only `short` Gaussians
        samples[1] = {"splats": samples[1]["splats"][:short]}
    tokens = [modality.tokenize(s, np.random.default_rng(i)) for i, s in enumerate(samples)]
    return modality.on_device(collate_tokens(tokens))


def test_group_tokens_match_spec_and_are_centre_relative(folder: SplatFolder) -> None:
    modality = SplatModality(num_points=128, num_groups=16, group_size=8)
    batch = small_batch(modality, folder)
    spec = modality.spec()
    assert batch.values.shape == (4, 16, spec.value_dim) and batch.coords.shape == (4, 16, spec.coord_dim)
    members = batch.values.reshape(4, 16, 8, 14)
    assert torch.allclose(members[:, :, 0, :3], torch.zeros(4, 16, 3), atol=1e-6)  # the centre is its own nearest
    assert members[..., :3].norm(dim=-1).max() < 1.0  # neighbours are close to their centre
    assert torch.isfinite(batch.values).all() and torch.isfinite(batch.coords).all()


def test_padding_is_never_visible_and_never_scored(folder: SplatFolder) -> None:
    modality = SplatModality(num_points=128, num_groups=16, group_size=8)
    batch = small_batch(modality, folder, short=10)
    assert batch.pad[1].sum() == 6 and not batch.pad[[0, 2, 3]].any()
    assert (batch.values[1][batch.pad[1]] == 0).all()
    mask = RandomMasker(0.6)(batch, torch.Generator().manual_seed(0))
    assert not (mask.hidden & batch.pad).any()
    visible = torch.gather(batch.pad, 1, mask.visible_idx)
    assert not (visible & ~mask.visible_pad).any()
    encoder = TokenEncoder(modality.spec(), modality, dim=32, depth=1, heads=2)
    objective = MAE(encoder, modality, decoder_dim=32, decoder_depth=1, decoder_heads=2, norm_target=False)
    loss = objective(batch, mask).loss
    garbage = batch.values.clone()
    garbage[batch.pad] = 1e6  # whatever sits in padded groups must not change the loss
    targets = {name: t.masked_fill(batch.pad[..., None], 1e6) for name, t in batch.targets.items()}
    poisoned = type(batch)(values=garbage, coords=batch.coords, pad=batch.pad, targets=targets)
    assert torch.allclose(objective(poisoned, mask).loss, loss)


def test_feature_grouping_and_splat_pooling(folder: SplatFolder) -> None:
    modality = SplatModality(num_points=128, num_groups=8, group_size=8, group_by=["xyz", "colour", "scale"],
                             pooling="splat")
    batch = small_batch(modality, folder)
    embedded = modality.value_embedding(24)(batch.values)
    assert embedded.shape == (4, 8, 24) and torch.isfinite(embedded).all()
    embedded.sum().backward()


def test_bad_options_are_recipe_errors() -> None:
    with pytest.raises(RecipeError, match="group_by"):
        SplatModality(group_by=["normal"])
    with pytest.raises(RecipeError, match="num_groups"):
        SplatModality(num_points=16, num_groups=32)
    with pytest.raises(RecipeError, match="weight 0"):
        SplatModality(loss_weights={"xyz": 0.0})


def test_baseline_and_visualisation(folder: SplatFolder, tmp_path: Path) -> None:
    modality = SplatModality(num_points=128, num_groups=16, group_size=8)
    features = modality.baseline_features(folder[0])
    assert features.shape == (39,) and features[:32].sum() == pytest.approx(1.0, abs=1e-5)
    batch = small_batch(modality, folder)
    hidden = torch.zeros(4, 16, dtype=torch.bool)
    hidden[:, :8] = True
    png = modality.visualize(batch, hidden, {"values": batch.values + 0.01}, tmp_path / "r.png")
    assert png.stat().st_size > 10_000


def test_attribute_targets_are_centred_per_object(folder: SplatFolder) -> None:
    """The ``splats`` target is the groups minus each object's mean opacity, scale and colour, so an
    object-wide colour shift leaves it unchanged; ``raw`` scores the token values themselves."""
    modality = SplatModality(num_points=128, num_groups=16, group_size=8)
    batch = small_batch(modality, folder, short=10)
    assert [s.name for s in modality.target_streams()] == ["splats"]
    groups = batch.values.reshape(4, 16, 8, 14)
    target = batch.targets["splats"].reshape(4, 16, 8, 14)
    real = ~batch.pad
    for b in range(4):
        members = groups[b][real[b]]  # [G_real, 8, 14]
        mean = members.reshape(-1, 14).mean(0)
        expected = members.clone()
        expected[..., 3:7] -= mean[3:7]
        expected[..., 11:14] -= mean[11:14]
        assert torch.allclose(target[b][real[b]], expected, atol=1e-5)
        assert (target[b][~real[b]] == 0).all()
    # Shift one object's colour: its inputs change, its centred targets do not.
    samples = [folder[i] for i in range(4)]
    tinted = dict(samples[0], splats=np.array(samples[0]["splats"]))
    tinted["splats"][:, 11:14] += 0.2
    plain, shifted = (modality.on_device(collate_tokens([modality.tokenize(s, None)])) for s in (samples[0], tinted))
    assert not torch.allclose(plain.values, shifted.values)
    assert torch.allclose(plain.targets["splats"], shifted.targets["splats"], atol=1e-5)
    raw = SplatModality(num_points=128, num_groups=16, group_size=8, attribute_targets="raw")
    assert [s.name for s in raw.target_streams()] == ["values"] and not small_batch(raw, folder).targets
    with pytest.raises(RecipeError, match="attribute_targets"):
        SplatModality(attribute_targets="object")


def test_reconstructions_get_the_object_means_back(folder: SplatFolder, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A centred prediction of zero is drawn in the object's mean colour, not grey."""
    import omnissl_splat.viz

    drawn = {}
    monkeypatch.setattr(omnissl_splat.viz, "plot_splat_reconstructions",
                        lambda batch, hidden, predicted, path: drawn.setdefault("pred", predicted))
    modality = SplatModality(num_points=128, num_groups=16, group_size=8)
    batch = small_batch(modality, folder)
    hidden = torch.ones(4, 16, dtype=torch.bool)
    modality.visualize(batch, hidden, {"splats": torch.zeros_like(batch.values)}, tmp_path / "r.png")
    colours = drawn["pred"].reshape(4, 16, 8, 14)[..., 11:14]
    true_means = batch.values.reshape(4, -1, 14)[..., 11:14].mean(1)  # [4, 3]
    assert torch.allclose(colours, true_means[:, None, None].expand_as(colours), atol=1e-5)
