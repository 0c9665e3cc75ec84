import pytest
import torch

from omnissl import Tokens, collate_tokens
from omnissl.errors import RecipeError
from omnissl.maskers import BlockMasker, GroupMasker, Mask, RandomMasker, SpanMasker


def grid_tokens(rows: int, cols: int) -> Tokens:
    coords = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).reshape(-1, 2)
    kinds = coords[:, :1].long()  # group = row
    return Tokens(values=torch.randn(rows * cols, 4), coords=coords.float(), kinds=kinds)


@pytest.fixture
def batch():
    return collate_tokens([grid_tokens(8, 8), grid_tokens(4, 6), grid_tokens(8, 5)])


MASKERS = [RandomMasker(0.75), BlockMasker(0.5, min_size=2, max_size=3), SpanMasker(0.5, span=2, axis=1),
           GroupMasker(0.5, kinds_column=0), GroupMasker(0.4, coord_axes=[1])]


@pytest.mark.parametrize("masker", MASKERS, ids=lambda m: type(m).__name__)
def test_padding_never_visible_nor_hidden(masker, batch):
    mask = masker(batch, torch.Generator().manual_seed(0))
    assert not (mask.hidden & batch.pad).any()
    real = (~batch.pad).sum(1)
    visible = (~mask.visible_pad).sum(1)
    hidden = (~mask.hidden_pad).sum(1)
    assert torch.equal(visible + hidden, real)  # every real token is exactly one of the two
    assert (visible >= 1).all() and (hidden >= 1).all()
    for b in range(batch.batch_size):
        vis = mask.visible_idx[b][~mask.visible_pad[b]]
        hid = mask.hidden_idx[b][~mask.hidden_pad[b]]
        assert not batch.pad[b, vis].any() and not batch.pad[b, hid].any()
        assert not set(vis.tolist()) & set(hid.tolist())
    # Unequal counts are padded to the largest, never truncated.
    assert mask.visible_idx.shape[1] == int(visible.max())


@pytest.mark.parametrize("masker", MASKERS, ids=lambda m: type(m).__name__)
def test_masks_are_seeded(masker, batch):
    a = masker(batch, torch.Generator().manual_seed(3)).hidden
    b = masker(batch, torch.Generator().manual_seed(3)).hidden
    c = masker(batch, torch.Generator().manual_seed(4)).hidden
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_masker_exact_ratio(batch):
    mask = RandomMasker(0.75)(batch, torch.Generator().manual_seed(0))
    assert mask.hidden.sum(1).tolist() == [48, 18, 30]


def test_block_masker_hides_whole_boxes():
    batch = collate_tokens([grid_tokens(8, 8)])
    mask = BlockMasker(0.25, min_size=2)(batch, torch.Generator().manual_seed(1))
    hidden = mask.hidden[0].reshape(8, 8)
    # every hidden cell belongs to at least one fully hidden 2x2 box
    for r, c in hidden.nonzero().tolist():
        boxes = [hidden[rr:rr + 2, cc:cc + 2] for rr in (r - 1, r) for cc in (c - 1, c)
                 if 0 <= rr <= 6 and 0 <= cc <= 6]
        assert any(box.all() for box in boxes)
    assert int(hidden.sum()) >= 16


def test_span_masker_hides_across_other_axes():
    batch = collate_tokens([grid_tokens(6, 10)])
    mask = SpanMasker(0.3, span=2, axis=1)(batch, torch.Generator().manual_seed(0))
    hidden = mask.hidden[0].reshape(6, 10)
    assert (hidden.all(0) | ~hidden.any(0)).all()  # a column is hidden on every row or on none
    assert int(hidden.sum()) >= 18


def test_group_masker_hides_whole_groups():
    batch = collate_tokens([grid_tokens(6, 5)])
    mask = GroupMasker(0.5, kinds_column=0)(batch, torch.Generator().manual_seed(0))
    hidden = mask.hidden[0].reshape(6, 5)
    assert (hidden.all(1) | ~hidden.any(1)).all()


def test_mask_from_hidden_ignores_padding():
    pad = torch.tensor([[False, False, True]])
    mask = Mask.from_hidden(torch.tensor([[True, False, True]]), pad)
    assert mask.hidden.tolist() == [[True, False, False]]


def test_bad_options_are_recipe_errors():
    with pytest.raises(RecipeError, match="ratio"):
        RandomMasker(1.5)
    with pytest.raises(RecipeError, match="kinds_column or coord_axes"):
        GroupMasker(0.5)
