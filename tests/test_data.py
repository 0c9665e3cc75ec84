"""The data path: seeded sampler, batched fetch and tokenisation (Modality.tokenize_batch)."""

import numpy as np
import pytest
import torch

from omnissl import CoordGroup, Modality, TokenBatch, Tokens, TokenSpec, collate_tokens
from omnissl.errors import DataError
from omnissl.train.data import SeededBatchSampler, TokenDataset, make_loader

SPEC = TokenSpec(value_dim=2, coords=(CoordGroup("grid", 1),))


class Rows(Modality):
    """Sample i is i + 1 tokens whose values are i; tokenize_batch builds the batch in one go."""

    name = "rows"
    broken = False

    def spec(self) -> TokenSpec:
        return SPEC

    def tokenize(self, sample, rng):
        n = sample + 1
        return Tokens(values=torch.full((n, 2), float(sample)), coords=torch.arange(n, dtype=torch.float32)[:, None])

    def tokenize_batch(self, dataset, indices, seeds):
        assert list(indices) == sorted(indices), "the core sorts a batch before reading it"
        n = max(indices) + 1
        lengths = torch.tensor(indices) + 1
        pad = torch.arange(n)[None, :] >= lengths[:, None]
        values = torch.tensor(indices, dtype=torch.float32)[:, None, None].expand(-1, n, 2).masked_fill(pad[..., None], 0)
        coords = torch.arange(n, dtype=torch.float32)[None, :, None].expand(len(indices), -1, -1).masked_fill(
            pad[..., None], 0)
        return TokenBatch(values=values[..., :1] if self.broken else values.contiguous(), coords=coords.contiguous(),
                          pad=pad, meta=[{} for _ in indices])


class Labelled(list):
    labels = np.array([0, 1, 2, 3, 4, 5], dtype=np.int64)


def test_batched_fetch_matches_per_sample_and_fills_labels():
    tokens = TokenDataset(Labelled(range(6)), Rows())
    assert tokens.batched
    keys = [(4, 11), (1, None), (3, 5)]
    fast = collate_tokens(tokens.__getitems__(keys))  # collate passes a TokenBatch through
    slow = collate_tokens([tokens[key] for key in sorted(keys)])
    for name in ("values", "coords", "pad"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.labels.tolist() == slow.labels.tolist() == [1.0, 3.0, 4.0]


def test_batched_tokens_off_spec_name_the_modality():
    modality = Rows()
    modality.broken = True
    with pytest.raises(DataError, match=r"rows batch.*values must be \(2, 3, 2\), got \(2, 3, 1\).*tokenize_batch"):
        TokenDataset(list(range(6)), modality).__getitems__([(0, None), (2, None)])


def test_loader_uses_the_batched_path_without_labels():
    tokens = TokenDataset(list(range(8)), Rows())
    sampler = SeededBatchSampler(range(8), 4, seed=0)
    batch = next(iter(make_loader(tokens, sampler, 0)))
    assert batch.batch_size == 4 and batch.labels.isnan().all()


def test_sampler_is_a_pure_function_of_seed_and_step():
    full = SeededBatchSampler(range(10), 3, seed=7)
    stream = iter(full)
    first = [next(stream) for _ in range(7)]  # crosses two epoch boundaries (3 batches an epoch)
    resumed = iter(SeededBatchSampler(range(10), 3, seed=7, start=4))
    assert [next(resumed) for _ in range(3)] == first[4:]
    assert sorted(i for batch in first[:3] for i, _ in batch) == sorted(set(i for batch in first[:3] for i, _ in batch))
    seeds = [s for batch in first for _, s in batch]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) > 15
    assert first[0] != next(iter(SeededBatchSampler(range(10), 3, seed=8)))
    plain = next(iter(SeededBatchSampler(range(10), 3, seed=7, augment=False)))
    assert [s for _, s in plain] == [None, None, None]


class Halved(Rows):
    """on_device drops half of each value: tokens leave the loader in spec, not the device."""

    name = "halved"

    def on_device(self, batch):
        from dataclasses import replace

        return replace(batch, values=batch.values[..., :1])


def test_on_device_output_is_checked_where_the_loader_cannot():
    from omnissl.train.data import validate_tokens

    assert not TokenDataset(list(range(6)), Halved()).check_spec  # on_device may regroup: not checked early
    keeps = Halved()
    keeps.on_device_keeps_spec = True  # declared shape-preserving (EEG's scaling): checked in the loader
    assert TokenDataset(list(range(6)), keeps).check_spec
    good = collate_tokens([Rows().tokenize(i, None) for i in (1, 2)])
    validate_tokens(Rows().on_device(good), SPEC, "rows batch after on_device", "on_device")
    with pytest.raises(DataError, match=r"halved batch after on_device.*values must be \(2, 3, 2\).*on_device\(\)"):
        validate_tokens(Halved().on_device(good), SPEC, "halved batch after on_device", "on_device")
