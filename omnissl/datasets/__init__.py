"""The core's own data sets, for any modality: ``shards`` (samples written by ``omnissl shard``, read
through LitData, locally or from an object store) and ``mixture`` (several sources sampled in
proportion to weights). Both are map-style (a length, random access, ``labels`` and ``groups`` where
their sources have them), so the training loop's seeded sampler orders, splits and resumes them as
it does any plugin's data set. docs/design.md#streaming says why and how.

Beside them, the optional methods of any data set that the core uses when present: batched reads
(``get_samples``, ``get_stacks``: :func:`read_samples`, :func:`read_stacks`) and the side files a
run keeps (``run_files``: :func:`write_run_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np


def read_samples(dataset: Any, indices: Sequence[int]) -> list[Any]:
    """``[dataset[i] for i in indices]``, in one batched read where the data set has one.

    A data set may define ``get_samples(indices) -> list`` that reads several samples in one
    pass (shards read a batch from their chunks' memory maps; a mixture asks each
    source for its share); the loader reads each batch of per-sample tokenising through here.
    """
    get_samples = getattr(dataset, "get_samples", None)
    if callable(get_samples):
        return list(get_samples(indices))
    return [dataset[int(i)] for i in indices]


class Stack(NamedTuple):
    """Samples of one batch that differ only in their arrays' values (all else equal: strings,
    numbers, dtypes and shapes), as one sample whose arrays (and tensors) are stacked.

    Attributes:
        rows: (n,) positions of these samples among the batch's indices.
        sample: a sample of the data set with each array of shape S replaced by the (n, *S)
            stack of the n samples' arrays, row k the sample at position ``rows[k]``. The stacks
            are the batch's own (new, writable, sharing memory with nothing the data set keeps):
            a modality may make its tokens views of them and change them in place.
    """

    rows: np.ndarray
    sample: Any


def read_stacks(dataset: Any, indices: Sequence[int]) -> list[Stack]:
    """The samples at ``indices`` as :class:`Stack` s, for a modality that tokenises a batch of
    samples with array operations (omnissl-eeg's ``tokenize_batch`` for data sets other than its own).

    A data set may define ``get_stacks(indices) -> list[Stack]`` that reads them stacked straight
    away (shards gather each array from the chunk's memory map into its stack; a mixture
    asks each source); any other's samples are read (:func:`read_samples`) and stacked
    (:func:`stack_samples`).
    """
    get_stacks = getattr(dataset, "get_stacks", None)
    if callable(get_stacks):
        return list(get_stacks(indices))
    return stack_samples(read_samples(dataset, indices))


def stack_samples(samples: Sequence[Any]) -> list[Stack]:
    """``samples`` grouped by everything but their arrays' values, each group stacked (its
    layout as :mod:`omnissl.datasets.codec` writes it: samples of the kinds shards hold)."""
    from omnissl.datasets import codec

    groups: dict[tuple, list[int]] = {}
    encoded = [codec.encode(sample, f"sample {i} of a batch", finite=False) for i, sample in enumerate(samples)]
    for i, (layout, arrays) in enumerate(encoded):
        key = (layout, *((a.dtype.str, a.shape) for a in arrays))
        groups.setdefault(key, []).append(i)
    stacks = []
    for (layout, *_), rows in groups.items():
        arrays = [np.stack([encoded[i][1][k] for i in rows]) for k in range(len(encoded[rows[0]][1]))]
        stacks.append(Stack(np.array(rows, dtype=np.int64), codec.decode(layout, arrays, "a batch's samples")))
    return stacks


def write_run_files(dataset: Any, out_dir: Path) -> list[Path]:
    """Write the side files ``dataset`` gives a run into ``out_dir``; returns their paths.

    A data set may define ``run_files() -> {file name: JSON value}``: what a run trained on it
    keeps beside its checkpoints for later use (omnissl-audio's ``audio_stats.json``, the log-mel
    normalisation; omnissl-eeg's ``eeg_channels.json``, the channel identities), carried into
    exports as ``run_files``. ``omnissl shard`` records them, so a run from shards writes the same.
    """
    run_files = getattr(dataset, "run_files", None)
    if not callable(run_files):
        return []
    from omnissl.cache import write_json
    from omnissl.errors import DataError

    written = []
    for name, value in run_files().items():
        if not (isinstance(name, str) and name.endswith(".json") and Path(name).name == name):
            raise DataError(f"{type(dataset).__qualname__}.run_files() names the file {name!r}; a run file is a JSON "
                            f"file name without a folder (audio_stats.json)")
        written.append(write_json(Path(out_dir) / name, value, f"run file {name}", indent=2))
    return written
