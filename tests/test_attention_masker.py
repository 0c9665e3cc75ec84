"""The attention masker (AttMask): hides the top-scoring tokens plus a random share, hits its ratio,
never hides padding (grid and continuous coordinates), and the encoder's attention scores are the
last block's softmax attention, unchanged by padding."""

import pytest
import torch

from omnissl import CoordGroup, Tokens, TokenSpec, collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.errors import RecipeError
from omnissl.maskers import AttentionMasker
from omnissl.maskers.base import hide_count


def grid(side: int, seed: int) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)
    return Tokens(values=torch.randn(side * side, 4, generator=g), coords=coords.float())


def cloud(n: int, seed: int) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    return Tokens(values=torch.randn(n, 4, generator=g), coords=torch.randn(n, 3, generator=g))


BATCHES = {"grid": lambda: collate_tokens([grid(6, 0), grid(3, 1), grid(5, 2), grid(1, 3)]),
           "continuous": lambda: collate_tokens([cloud(30, 0), cloud(7, 1), cloud(19, 2), cloud(2, 3)])}


@pytest.mark.parametrize("kind", list(BATCHES))
@pytest.mark.parametrize("random_fraction", [0.0, 0.3, 1.0])
def test_hits_its_ratio_and_never_hides_padding(kind, random_fraction):
    batch = BATCHES[kind]()
    masker = AttentionMasker(ratio=0.6, random_fraction=random_fraction)
    real = (~batch.pad).sum(1)
    scores = torch.rand(batch.pad.shape, generator=torch.Generator().manual_seed(5)).masked_fill(batch.pad, 1e9)
    for mask in (masker.hide_by_scores(batch, scores, torch.Generator().manual_seed(0)),
                 masker(batch, torch.Generator().manual_seed(0))):
        assert not (mask.hidden & batch.pad).any()
        assert torch.equal(mask.hidden.sum(1), hide_count(real, 0.6))
        hidden_real = mask.hidden_idx[~mask.hidden_pad]
        assert not batch.pad.gather(1, mask.hidden_idx)[~mask.hidden_pad].any() and hidden_real.numel()
        assert not batch.pad.gather(1, mask.visible_idx)[~mask.visible_pad].any()
        assert torch.equal((~mask.visible_pad).sum(1) + (~mask.hidden_pad).sum(1), real)


def test_the_most_attended_tokens_are_hidden_first():
    batch = BATCHES["grid"]()
    scores = torch.rand(batch.pad.shape, generator=torch.Generator().manual_seed(1))
    real = (~batch.pad).sum(1)
    k = hide_count(real, 0.5)
    high = AttentionMasker(0.5, random_fraction=0.0).hide_by_scores(batch, scores, torch.Generator().manual_seed(0))
    for b in range(batch.batch_size):
        top = scores[b, : real[b]].topk(int(k[b])).indices  # the real tokens come first in each row
        assert set(top.tolist()) == set(mask_row := high.hidden[b].nonzero().squeeze(1).tolist()), mask_row
    # with a random share, the top (1 - random_fraction) of the hidden tokens are still the top scorers,
    # and the rest differ between generators
    mix = AttentionMasker(0.5, random_fraction=0.5)
    a = mix.hide_by_scores(batch, scores, torch.Generator().manual_seed(0)).hidden
    b_ = mix.hide_by_scores(batch, scores, torch.Generator().manual_seed(1)).hidden
    k_top = k - torch.round(k.float() * 0.5).long()
    for b in range(batch.batch_size):
        top = scores[b, : real[b]].topk(int(k_top[b])).indices
        assert a[b, top].all() and b_[b, top].all()
    assert not torch.equal(a, b_)
    # AttMask-High alone ignores the generator
    again = AttentionMasker(0.5, random_fraction=0.0).hide_by_scores(batch, scores, torch.Generator().manual_seed(9))
    assert torch.equal(again.hidden, high.hidden)


def test_without_scores_it_is_seeded_random_masking():
    batch = BATCHES["continuous"]()
    masker = AttentionMasker(0.5, random_fraction=0.0)
    one = masker(batch, torch.Generator().manual_seed(3)).hidden
    assert torch.equal(one, masker(batch, torch.Generator().manual_seed(3)).hidden)
    assert not torch.equal(one, masker(batch, torch.Generator().manual_seed(4)).hidden)


@pytest.mark.parametrize("options, pattern", [({"ratio": 1.0}, "masker.ratio"),
                                              ({"random_fraction": 1.5}, "masker.random_fraction")])
def test_bad_options_name_the_key(options, pattern):
    with pytest.raises(RecipeError, match=pattern):
        AttentionMasker(**options)


def test_scores_shape_is_checked():
    batch = BATCHES["grid"]()
    with pytest.raises(ValueError, match="attention scores must be"):
        AttentionMasker().hide_by_scores(batch, torch.rand(4, 3))


def test_encoder_attention_scores_are_the_last_blocks_attention():
    spec = TokenSpec(value_dim=4, coords=(CoordGroup("grid", 2),))
    torch.manual_seed(0)
    encoder = TokenEncoder(spec, None, dim=16, depth=2, heads=2).eval()
    batch = BATCHES["grid"]()
    features, scores = encoder.attention_scores(batch.values, batch.coords, None, batch.pad)
    torch.testing.assert_close(features, encoder(batch.values, batch.coords, None, batch.pad))
    assert torch.equal(scores[batch.pad], torch.zeros(int(batch.pad.sum())))
    torch.testing.assert_close(scores.sum(1), torch.ones(batch.batch_size))
    # by hand for the first sample (no padding in it): the second block's attention, from its input
    n = int((~batch.pad[0]).sum())
    x = encoder.embed(batch.values[:1, :n], batch.coords[:1, :n], None)
    x = encoder.blocks.blocks[0](x)
    last = encoder.blocks.blocks[1].attn
    qkv = last.qkv(encoder.blocks.blocks[1].norm1(x)).view(1, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
    weights = ((qkv[0] @ qkv[1].transpose(-2, -1)) / 8 ** 0.5).softmax(-1)  # [1, H, N, N]
    torch.testing.assert_close(scores[0, :n], weights.mean(1).mean(1)[0], rtol=1e-5, atol=1e-6)
    # a padded sample scores as when alone
    for b in range(1, batch.batch_size):
        m = int((~batch.pad[b]).sum())
        _, alone = encoder.attention_scores(batch.values[b:b + 1, :m], batch.coords[b:b + 1, :m])
        torch.testing.assert_close(scores[b, :m], alone[0], rtol=1e-5, atol=1e-6)
