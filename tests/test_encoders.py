import pytest
import torch

from omnissl import CoordGroup, Modality, Tokens, TokenSpec, collate_tokens
from omnissl.encoders import SIZES
from omnissl.plugins import get_registry

# Plugins test their own components (omnissl.testing); these are the core's.
BUILTIN = sorted(n for n, (_, owner) in get_registry().components["encoders"].items() if owner == "omnissl")
SPEC = TokenSpec(value_dim=6, coords=(CoordGroup("continuous", 3, scale=0.5), CoordGroup("grid", 1)),
                 kind_vocab=(3, 5), bias_channels=2)


class Toy(Modality):
    def spec(self) -> TokenSpec:
        return SPEC


def sample(n: int, seed: int) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    return Tokens(values=torch.randn(n, 6, generator=g), coords=torch.randn(n, 4, generator=g),
                  kinds=torch.randint(0, 3, (n, 2), generator=g), attn_bias=torch.randn(n, n, 2, generator=g))


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("size", ["tiny", "small"])
def test_every_encoder_shapes_and_finite(name, size):
    encoder = get_registry().get("encoders", name)(SPEC, Toy(), size=size, depth=2)
    batch = collate_tokens([sample(5, 0), sample(9, 1)])
    out = encoder.forward_batch(batch)
    assert out.shape == (2, 9, SIZES[size][0])
    assert torch.isfinite(out).all()


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    encoder = get_registry().get("encoders", "transformer")(SPEC, Toy(), dim=32, depth=2, heads=4).eval()
    alone = encoder.forward_batch(collate_tokens([sample(5, 0)]))
    padded = encoder.forward_batch(collate_tokens([sample(5, 0), sample(12, 1)]))
    assert torch.allclose(alone[0], padded[0, :5], atol=1e-5)


def test_attention_bias_reaches_attention():
    torch.manual_seed(0)
    encoder = get_registry().get("encoders", "transformer")(SPEC, Toy(), dim=32, depth=1, heads=4).eval()
    batch = collate_tokens([sample(6, 0)])
    before = encoder.forward_batch(batch)
    batch.attn_bias = batch.attn_bias * 5
    assert not torch.allclose(before, encoder.forward_batch(batch))


def test_content_kinds_hidden_in_dense_mode():
    spec = TokenSpec(value_dim=6, coords=(CoordGroup("grid", 1),), kind_vocab=(3, 5), content_kinds=(1,))

    class Content(Modality):
        def spec(self) -> TokenSpec:
            return spec

    encoder = get_registry().get("encoders", "transformer")(spec, Content(), dim=32, depth=1, heads=4).eval()
    values, coords = torch.randn(1, 4, 6), torch.arange(4.0).view(1, 4, 1)
    kinds = torch.zeros(1, 4, 2, dtype=torch.long)
    hidden = torch.tensor([[False, True, False, False]])
    other = kinds.clone()
    other[0, 1, 1] = 4  # change the hidden token's content kind only
    a = encoder(values, coords, kinds, hidden=hidden)
    b = encoder(values, coords, other, hidden=hidden)
    assert torch.allclose(a, b)
    other[0, 1, 0] = 2  # an identity kind stays visible
    assert not torch.allclose(a, encoder(values, coords, other, hidden=hidden))


def test_unknown_size_is_a_recipe_error():
    from omnissl.errors import RecipeError

    with pytest.raises(RecipeError, match="encoder.size"):
        get_registry().get("encoders", "transformer")(SPEC, Toy(), size="huge")


def test_pooling_ignores_padding():
    from omnissl.encoders.transformer import TokenEncoder

    features = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [99.0, 99.0]], [[-1.0, -1.0], [0.0, 0.0], [0.0, 0.0]]])
    pad = torch.tensor([[False, False, True], [False, True, True]])
    assert torch.equal(TokenEncoder.pool(features, pad), torch.tensor([[2.0, -1.0], [-1.0, -1.0]]))
    assert torch.equal(TokenEncoder.pool(features, pad, "max"), torch.tensor([[3.0, 0.0], [-1.0, -1.0]]))
    both = TokenEncoder.pool(features, pad, "mean_max")
    assert both.shape == (2, 4) and torch.equal(both[:, 2:], TokenEncoder.pool(features, pad, "max"))
    with pytest.raises(ValueError, match="mean_max"):
        TokenEncoder.pool(features, pad, "cls")
