"""The replay reservoir (Algorithm R) and the phased batches: uniform, seeded, exact on resume."""

import io

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from omnissl.errors import TrainingError
from omnissl.research.phases import Phase, PhasedBatchSampler
from omnissl.research.replay import Reservoir, compose_batch, replay_count


def test_reservoir_is_uniform_over_the_samples_seen():
    n, capacity, trials = 60, 10, 800
    counts = np.zeros(n)
    for seed in range(trials):
        reservoir = Reservoir(capacity, seed)
        for start in range(0, n, 7):  # delivered in chunks, as batches arrive
            reservoir.add(np.arange(start, min(n, start + 7)))
        assert len(reservoir) == capacity and len(set(reservoir.items.tolist())) == capacity
        counts[reservoir.items] += 1
    # each sample is kept with probability capacity / n in every trial
    result = chisquare(counts, np.full(n, trials * capacity / n))
    assert result.pvalue > 0.01, result
    # the early and the late samples are kept as often as each other (no recency bias)
    assert abs(counts[: n // 2].sum() - counts[n // 2:].sum()) < 0.05 * counts.sum()


def test_reservoir_vectorised_add_is_algorithm_r_one_item_at_a_time():
    reservoir = Reservoir(10, seed=3)
    reservoir.add(np.arange(25))
    # Algorithm R by hand with the same draws: item i replaces slot j ~ U{0..i} when j < capacity
    items = list(range(10))
    rng = np.random.default_rng([3, 0])
    for i, j in zip(range(10, 25), rng.integers(0, np.arange(10, 25) + 1)):
        if j < 10:
            items[j] = i
    assert reservoir.items.tolist() == items
    assert reservoir.seen == 25


def test_state_round_trip_is_exact_and_weights_only():
    a = Reservoir(50, seed=7)
    a.add(np.arange(80))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = Reservoir(50, seed=7)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.seen == a.seen and b.items.tolist() == a.items.tolist()
    for chunk in (np.arange(80, 130), np.arange(130, 131)):
        a.add(chunk)
        b.add(chunk)
    assert a.items.tolist() == b.items.tolist()
    with pytest.raises(TrainingError, match="capacity 50 and seed 7, this run 40 and 7"):
        Reservoir(40, seed=7).load_state_dict(a.state_dict())


def test_compose_batch_appends_replayed_samples_with_seeds():
    reservoir = Reservoir(5, seed=0)
    reservoir.add([100, 101, 102])
    current = [(1, 11), (2, 12)]
    batch = compose_batch(current, reservoir, 2, np.random.default_rng(0))
    assert batch[:2] == current and len(batch) == 4
    assert all(index in (100, 101, 102) and seed is not None for index, seed in batch[2:])
    assert len({index for index, _ in batch[2:]}) == 2  # without replacement while there are enough
    plain = compose_batch([(1, None)], reservoir, 1, np.random.default_rng(0))
    assert plain[1][1] is None  # no augmentation stays no augmentation
    assert replay_count(32, 0.25) == 8 and replay_count(4, 0.01) == 1 and replay_count(4, 0.99) == 3
    assert replay_count(32, 0.0) == 0


PHASES = [Phase("a", {}, 6, 0), Phase("b", {}, 5, 6), Phase("c", {}, 4, 11)]
TRAIN = [np.arange(0, 40), np.arange(100, 130), np.arange(200, 225)]


def sampler():
    return PhasedBatchSampler(PHASES, TRAIN, batch_size=16, seed=5, replay=0.25, replay_size=16)


def test_phased_batches_replay_earlier_phases_only():
    phased = sampler()
    batches = [phased.batch(step) for step in range(15)]
    for step, batch in enumerate(batches):
        indices = np.array([index for index, _ in batch])
        phase = 0 if step < 6 else 1 if step < 11 else 2
        own = np.isin(indices, TRAIN[phase])
        assert len(indices) == 16 and own.sum() == (16 if phase == 0 else 12)
        earlier = np.concatenate(TRAIN[:phase]) if phase else np.array([], dtype=int)
        assert np.isin(indices[~own], earlier).all()  # the rest is replayed from earlier phases
        assert all(seed is not None for _, seed in batch)
    replayed = [i for b in batches[11:] for i, _ in b if i < 200]
    assert {i // 100 for i in replayed} == {0, 1}  # the last phase replays both earlier ones
    first_half = [np.isin([i for i, _ in b[:8]], TRAIN[1]).sum() for b in batches[6:11]]
    assert 0 < sum(first_half) < 5 * 8  # shuffled: replayed samples land in every micro-batch


def test_phased_batches_resume_exactly():
    full = [sampler().batch(step) for step in range(15)]
    for step in (3, 6, 8, 12):
        ahead = sampler()
        for s in range(min(15, step + 5)):  # the loader prefetched past the checkpoint
            ahead.batch(s)
        buffer = io.BytesIO()
        torch.save(ahead.state_dict(step), buffer)
        buffer.seek(0)
        resumed = sampler()
        resumed.load_state_dict(torch.load(buffer, weights_only=True))
        assert [resumed.batch(s) for s in range(step, 15)] == full[step:], step
        fresh = sampler()  # and the reservoir is a function of the seed alone
        assert [fresh.batch(s) for s in range(step, 15)] == full[step:]


def test_ranks_share_the_phased_global_batch_out():
    from omnissl.train.data import RankBatchSampler

    phased = sampler()
    ranks = [iter(RankBatchSampler(phased, 4, rank, 2, start=5)) for rank in (0, 1)]
    for step in range(5, 9):
        pieces = [next(r) + next(r) for r in ranks]  # two micro-batches of 4 per rank and step
        assert pieces[0] + pieces[1] == phased.batch(step)
