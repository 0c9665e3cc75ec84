"""Gathering tokens for several rows per sample (views, I-JEPA's target copies) without repeating
the batch gives exactly what gathering from the repeated batch gives."""

import pytest
import torch

from omnissl.encoders.transformer import gather_layout, gather_tokens
from omnissl.objectives.base import repeat_batch
from omnissl.tokens import TokenBatch


def _batch(b: int = 3, n: int = 7) -> TokenBatch:
    g = torch.Generator().manual_seed(0)
    return TokenBatch(values=torch.randn(b, n, 4, generator=g), coords=torch.randn(b, n, 3, generator=g),
                      pad=torch.zeros(b, n, dtype=torch.bool), kinds=torch.randint(5, (b, n, 2), generator=g),
                      attn_bias=torch.randn(b, n, n, 3, generator=g))


@pytest.mark.parametrize("times", [1, 4])
def test_gather_without_repeat_equals_gather_from_repeated_batch(times: int) -> None:
    batch = _batch()
    idx = torch.randint(7, (3 * times, 5), generator=torch.Generator().manual_seed(1))
    expected = gather_tokens(repeat_batch(batch, times), idx) if times > 1 else None
    got = gather_tokens(batch, idx)
    if expected is None:  # one row per sample: the plain gather, row by row
        expected = (batch.values[torch.arange(3)[:, None], idx], batch.coords[torch.arange(3)[:, None], idx],
                    batch.kinds[torch.arange(3)[:, None], idx],
                    batch.attn_bias[torch.arange(3)[:, None, None], idx[:, :, None], idx[:, None, :]])
    for a, e in zip(got, expected):
        assert torch.equal(a, e)
    for a, e in zip(gather_layout(batch, idx), expected[1:]):
        assert torch.equal(a, e)


def test_rows_not_a_multiple_of_the_batch_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 3"):
        gather_tokens(_batch(), torch.zeros(4, 2, dtype=torch.long))
