"""Crops, tokens, masks and pictures of the CT modality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.errors import RecipeError
from omnissl.maskers.base import Mask
from omnissl.maskers.block import BlockMasker
from omnissl.objectives.mae import MAE
from omnissl.encoders.transformer import TokenEncoder
from omnissl_ct.modality import CTModality


def _sample(shape=(40, 36, 20)) -> dict:
    # Every voxel holds its own flat index + 1, so a crop shows exactly where it came from; 0 = padding.
    image = torch.arange(1, int(np.prod(shape)) + 1, dtype=torch.float32).reshape(1, *shape)
    return {"image": image, "spacing": torch.tensor([1.5, 1.5, 2.0]), "path": "volume.nii.gz"}


def test_tokens_match_spec_and_keep_spacing():
    modality = CTModality(crop_size=16, patch_size=8)
    tokens = modality.tokenize(_sample(), np.random.default_rng(0))
    tokens.validate(modality.spec())
    assert tokens.values.shape == (8, 512) and tokens.coords.shape == (8, 3)
    assert sorted(map(tuple, tokens.coords.long().tolist())) == list(itertools.product(range(2), repeat=3))
    assert tokens.meta["spacing"] == (1.5, 1.5, 2.0) and tokens.meta["grid"] == (2, 2, 2)


def test_random_crop_never_leaves_the_volume():
    modality = CTModality(crop_size=16, patch_size=8, flip_prob=0.5, rotate_prob=0.5)
    sample = _sample()  # Z (20) is barely larger than the crop
    n = sample["image"].numel()
    for seed in range(30):
        crop = modality.crop(sample, np.random.default_rng(seed))
        assert crop.shape == (1, 16, 16, 16)
        assert float(crop.min()) >= 1 and float(crop.max()) <= n  # only real voxels, no padding
        assert len(torch.unique(crop)) == crop.numel()  # distinct voxels: a crop, not a resampling


def test_volume_smaller_than_the_crop_is_padded_not_resampled():
    modality = CTModality(crop_size=16, patch_size=8)
    crop = modality.crop(_sample((10, 20, 16)), np.random.default_rng(0))
    assert crop.shape == (1, 16, 16, 16)
    assert int((crop > 0).sum()) == 10 * 16 * 16  # every real voxel along X kept, the rest padding


def test_augmentation_follows_the_generator_and_none_means_centre_crop():
    modality = CTModality(crop_size=16, patch_size=8)
    sample = _sample()
    a = modality.crop(sample, np.random.default_rng(5))
    b = modality.crop(sample, np.random.default_rng(5))
    assert torch.equal(a, b)
    crops = {modality.crop(sample, np.random.default_rng(s)).sum().item() for s in range(10)}
    assert len(crops) > 1
    centre = modality.crop(sample, None)
    np.testing.assert_array_equal(centre.numpy(), sample["image"][:, 12:28, 10:26, 2:18].numpy())


def test_crop_must_be_a_multiple_of_the_patch():
    with pytest.raises(RecipeError, match="multiple"):
        CTModality(crop_size=20, patch_size=8)


def test_block_masks_hide_whole_3d_blocks():
    """With fixed 2x2x2 boxes, every hidden token lies in a box (clipped to the grid) that is hidden entirely."""
    modality = CTModality(crop_size=32, patch_size=8)  # a 4 x 4 x 4 grid
    batch = collate_tokens([modality.tokenize(_sample(), np.random.default_rng(s)) for s in range(4)])
    hidden = BlockMasker(ratio=0.3, min_size=2, max_size=2)(batch, torch.Generator().manual_seed(0)).hidden
    for b in range(batch.batch_size):
        cells = {tuple(c) for c in batch.coords[b][hidden[b]].long().tolist()}
        assert len(cells) >= round(0.3 * 64)
        for cell in cells:
            boxes = ([(x, y, z) for x in range(lo[0], lo[0] + 2) for y in range(lo[1], lo[1] + 2)
                      for z in range(lo[2], lo[2] + 2) if max(x, y, z) < 4 and min(x, y, z) >= 0]
                     for lo in itertools.product(*[(c - 1, c) for c in cell]))
            assert any(all(p in cells for p in box) for box in boxes), f"{cell} is not inside a hidden block"


def test_padding_is_never_visible_and_never_in_the_loss():
    modality = CTModality(crop_size=16, patch_size=8)
    full = [modality.tokenize(_sample(), np.random.default_rng(s)) for s in range(2)]
    short = modality.tokenize(_sample(), np.random.default_rng(9))
    short.values, short.coords = short.values[:5], short.coords[:5]
    batch = collate_tokens([*full, short])
    torch.manual_seed(0)
    objective = MAE(TokenEncoder(modality.spec(), modality, dim=32, depth=1, heads=2), modality,
                    decoder_dim=16, decoder_depth=1, decoder_heads=2, norm_target=False).eval()
    mask = BlockMasker(ratio=0.5, min_size=1)(batch, torch.Generator().manual_seed(1))
    assert not (mask.hidden & batch.pad).any()
    visible = torch.zeros_like(batch.pad).scatter(1, mask.visible_idx, ~mask.visible_pad)
    assert not (visible & batch.pad).any()
    loss = objective(batch, mask).loss
    batch.values[batch.pad] = 1e6  # garbage in the padding rows changes nothing
    assert torch.allclose(objective(batch, mask).loss, loss)


def test_visualiser_draws_three_planes(tmp_path):
    modality = CTModality(crop_size=16, patch_size=8)
    batch = collate_tokens([modality.tokenize(_sample(), None) for _ in range(2)])
    mask = Mask.from_hidden(torch.rand(batch.pad.shape, generator=torch.Generator().manual_seed(0)) < 0.5, batch.pad)
    path = modality.visualize(batch, mask.hidden, {"values": torch.zeros_like(batch.values)}, tmp_path / "r.png")
    assert path.stat().st_size > 5000


def test_baseline_features_are_pooled_voxels_of_the_centre_crop():
    modality = CTModality(crop_size=16, patch_size=8, baseline_pool=4)
    features = modality.baseline_features(_sample())
    assert features.shape == (64,)
    assert features[0] == pytest.approx(float(modality.crop(_sample(), None)[0, :4, :4, :4].mean()))
