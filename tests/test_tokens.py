import pytest
import torch

from omnissl import Tokens, collate_tokens
from omnissl.tokenizers import GridPatchifier
from omnissl.tokens import gather_rows


@pytest.mark.parametrize("shape,patch", [((2, 32), (8,)), ((3, 16, 24), (4, 8)), ((1, 8, 12, 16), (4, 4, 8))])
def test_grid_patchifier_round_trip(shape, patch):
    patchifier = GridPatchifier(patch, channels=shape[0])
    array = torch.randn(shape)
    tokens = patchifier(array)
    grid = tokens.meta["grid"]
    assert tokens.values.shape == (torch.Size(grid).numel(), patchifier.value_dim)
    assert tokens.coords.shape == (tokens.values.shape[0], len(patch))
    assert torch.equal(patchifier.unpatchify(tokens.values, grid), array)


def test_grid_patch_content_and_coordinates_agree():
    patchifier = GridPatchifier((2, 3), channels=2)
    array = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    tokens = patchifier(array)
    for values, (row, col) in zip(tokens.values, tokens.coords.long().tolist()):
        patch = array[:, 2 * row:2 * row + 2, 3 * col:3 * col + 3]
        assert torch.equal(values, patch.reshape(-1))


def test_patchifier_batched_and_errors():
    patchifier = GridPatchifier(4, channels=3, ndim=2)
    batch = torch.randn(5, 3, 8, 8)
    assert patchifier.patchify(batch).shape == (5, 4, 48)
    with pytest.raises(ValueError, match="not a multiple"):
        patchifier.patchify(torch.randn(3, 10, 8))
    with pytest.raises(ValueError, match="channels"):
        patchifier.patchify(torch.randn(2, 8, 8))


def test_collate_pads_variable_length():
    a = Tokens(values=torch.ones(3, 2), coords=torch.zeros(3, 1), kinds=torch.ones(3, 1, dtype=torch.long),
               attn_bias=torch.ones(3, 3), targets={"t": torch.ones(3, 4)}, label=1)
    b = Tokens(values=torch.ones(5, 2), coords=torch.zeros(5, 1), kinds=torch.ones(5, 1, dtype=torch.long),
               attn_bias=torch.ones(5, 5), targets={"t": torch.ones(5, 4)})
    batch = collate_tokens([a, b])
    assert batch.values.shape == (2, 5, 2) and batch.attn_bias.shape == (2, 5, 5)
    assert batch.pad.tolist() == [[False] * 3 + [True] * 2, [False] * 5]
    assert batch.values[0, 3:].abs().sum() == 0 and batch.attn_bias[0, 3:].abs().sum() == 0
    assert batch.targets["t"].shape == (2, 5, 4)
    assert batch.labels[0] == 1 and torch.isnan(batch.labels[1])


def test_collate_rejects_mixed_samples():
    a = Tokens(values=torch.ones(3, 2), coords=torch.zeros(3, 1), kinds=torch.ones(3, 1, dtype=torch.long))
    b = Tokens(values=torch.ones(3, 2), coords=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="kinds"):
        collate_tokens([a, b])


def test_gather_rows():
    t = torch.arange(24).reshape(2, 4, 3)
    idx = torch.tensor([[3, 0], [1, 1]])
    out = gather_rows(t, idx)
    assert torch.equal(out[0, 0], t[0, 3]) and torch.equal(out[1, 1], t[1, 1])


def test_validate_names_wrong_dtypes_and_kinds_outside_their_vocabulary():
    """A float64 ``values`` or a kind past ``kind_vocab`` used to pass every check and then fail
    inside the encoder with torch's own message; the check names the field (issue 17)."""
    from omnissl import CoordGroup, TokenSpec

    spec = TokenSpec(3, (CoordGroup("grid", 1),), kind_vocab=(4, 2))
    good = Tokens(values=torch.zeros(5, 3), coords=torch.zeros(5, 1), kinds=torch.zeros(5, 2, dtype=torch.long))
    good.validate(spec)
    collate_tokens([good, good]).validate(spec)
    cases = [
        (dict(values=torch.zeros(5, 3, dtype=torch.float64)), "values must be float32, got torch.float64"),
        (dict(coords=torch.zeros(5, 1, dtype=torch.int64)), "coords must be float32, got torch.int64"),
        (dict(kinds=torch.zeros(5, 2)), "kinds must be an integer tensor"),
        (dict(kinds=torch.tensor([[0, 0], [3, 1], [4, 0], [0, 0], [1, 1]])),
         r"kinds column 0 holds 4, outside its vocabulary \(kind_vocab\[0\] = 4: values 0..3\)"),
        (dict(kinds=torch.tensor([[0, -1]] * 5)), r"kinds column 1 holds -1"),
    ]
    for change, message in cases:
        fields = {**dict(values=good.values, coords=good.coords, kinds=good.kinds), **change}
        with pytest.raises(ValueError, match=f"my modality sample 3: {message}"):
            Tokens(**fields).validate(spec, where="my modality sample 3")
    bad = Tokens(values=good.values, coords=good.coords, kinds=torch.full((5, 2), 1) * torch.tensor([5, 0]))
    with pytest.raises(ValueError, match="batch: kinds column 0 holds 5"):
        collate_tokens([good, bad]).validate(spec)
