"""Replay for sequential pre-training: a bounded, seeded reservoir of earlier phases' samples.

Pre-training on data that arrives in phases forgets the earlier phases; replaying a fraction
of each batch from a memory of earlier samples is the simplest remedy that works (Chaudhry et
al., "On Tiny Episodic Memories in Continual Learning", 2019, with a reservoir-sampled memory;
Purushwalkam et al., "The Challenges of Continuous Self-Supervised Learning", ECCV 2022, with a
buffer of earlier unlabelled samples). The memory is filled by reservoir sampling (Vitter's
Algorithm R, "Random Sampling with a Reservoir", ACM TOMS 1985): after n samples of a stream
it holds a uniform random subset of min(n, capacity) of them, in bounded memory, whatever n.

Everything random is a function of (seed, position), as in the training loop: Algorithm R's
draws for the samples added when ``seen`` samples came before are seeded by (seed, seen), and
a batch's replayed samples by the caller's generator. So a reservoir's state is its content
and its count, which :meth:`Reservoir.state_dict` returns as tensors and plain values (a
checkpoint loads them with ``weights_only=True``), and a resumed run draws exactly what an
uninterrupted one draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from omnissl.errors import TrainingError


class Reservoir:
    """A uniform random sample of at most ``capacity`` items of a stream (Algorithm R).

    Items are non-negative integers (sample indices).

    Args:
        capacity: how many items it holds at most.
        seed: seeds every replacement decision (with the stream position).
    """

    def __init__(self, capacity: int, seed: int):
        if capacity < 1:
            raise ValueError(f"a reservoir holds at least one item, got capacity {capacity}")
        self.capacity = int(capacity)
        self.seed = int(seed)
        self.seen = 0  # items of the stream so far
        self._items = np.zeros(0, dtype=np.int64)

    @property
    def items(self) -> np.ndarray:
        """The items held, (min(seen, capacity),) int64 (a copy)."""
        return self._items.copy()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stream: np.ndarray | list[int]) -> None:
        """Consume the next items of the stream, in order.

        Algorithm R: item number i (0-based) fills slot i while the reservoir is not full;
        afterwards it replaces slot j, drawn uniformly from 0..i, when j < capacity. Draws for
        one call are vectorised; where two items of a call replace the same slot, the later one
        wins, exactly as one at a time.
        """
        stream = np.asarray(stream, dtype=np.int64).reshape(-1)
        if len(stream) == 0:
            return
        if stream.min() < 0:
            raise ValueError("reservoir items are sample indices (>= 0)")
        free = max(0, self.capacity - len(self._items))
        self._items = np.concatenate([self._items, stream[:free]])
        rest = stream[free:]
        if len(rest):
            position = self.seen + free + np.arange(len(rest), dtype=np.int64)  # i of each item
            rng = np.random.default_rng([self.seed, self.seen])
            slot = rng.integers(0, position + 1)  # uniform on 0..i
            chosen = slot < self.capacity
            slot, value = slot[chosen], rest[chosen]
            last = len(slot) - 1 - np.unique(slot[::-1], return_index=True)[1]  # the last write of each slot
            self._items[slot[last]] = value[last]
        self.seen += len(stream)

    def draw(self, count: int, rng: np.random.Generator, eligible: np.ndarray | None = None) -> np.ndarray:
        """``count`` items drawn uniformly from the reservoir (without replacement while it holds
        enough, else with); ``eligible``: a boolean mask over :attr:`items` restricting the draw."""
        pool = self._items if eligible is None else self._items[eligible]
        if len(pool) == 0:
            raise TrainingError("the replay reservoir holds no sample to replay")
        return pool[rng.choice(len(pool), size=count, replace=len(pool) < count)]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "seed": self.seed, "seen": self.seen,
                "items": torch.from_numpy(self._items.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity or int(state["seed"]) != self.seed:
            raise TrainingError(f"the checkpoint's replay reservoir has capacity {state['capacity']} and seed "
                                f"{state['seed']}, this run {self.capacity} and {self.seed}; resume with the recipe "
                                f"the run was trained with")
        items = state["items"]
        items = items.numpy() if isinstance(items, torch.Tensor) else np.asarray(items)
        if len(items) > self.capacity or len(items) != min(int(state["seen"]), self.capacity):
            raise TrainingError(f"the checkpoint's replay reservoir is inconsistent ({len(items)} items after "
                                f"{state['seen']} seen, capacity {self.capacity})")
        self.seen = int(state["seen"])
        self._items = items.astype(np.int64).copy()


def replay_count(batch_size: int, fraction: float) -> int:
    """How many samples of a batch of ``batch_size`` are replayed: round(fraction * batch_size),
    at most ``batch_size - 1`` (every batch keeps a sample of the current phase), at least 1 when
    the fraction is positive."""
    if fraction <= 0:
        return 0
    return min(batch_size - 1, max(1, int(round(fraction * batch_size))))


def compose_batch(current: list[tuple[int, int | None]], reservoir: Reservoir, count: int,
                  rng: np.random.Generator, eligible: np.ndarray | None = None) -> list[tuple[int, int | None]]:
    """A batch of the current phase's samples followed by ``count`` samples replayed from the
    reservoir, each with an augmentation seed drawn from ``rng`` (a replayed sample is seen
    with a new augmentation, as a sample in a later epoch is).

    Args:
        current: the current phase's ``(index, item_seed)`` pairs (``item_seed`` None: no
            augmentation, which the replayed samples then follow).
        eligible: restricts the replay to these reservoir slots (:meth:`Reservoir.draw`).
    """
    if count == 0:
        return list(current)
    replayed = reservoir.draw(count, rng, eligible)
    augment = bool(current) and current[0][1] is not None
    seeds = rng.integers(0, 2**63 - 1, size=count, dtype=np.int64).tolist() if augment else [None] * count
    return list(current) + list(zip(replayed.tolist(), seeds))
