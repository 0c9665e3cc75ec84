"""Samples per second delivered to the training loop from LitData shards on local disk, against the
plugin's own memory-mapped cache: the same samples, the same process, the same loader.

Both sides are what ``omnissl train`` builds: the recipe's modality, :class:`TokenDataset`,
the loop's :class:`SeededBatchSampler` over all samples (same seed, so the same batches in the
same order) and ``make_loader`` with ``--workers`` workers, batch ``--batch-size``. The cache side
reads the recipe's data set (the plugin's cache, warm); the shards side reads the shards that
``omnissl shard`` wrote from that data set into a temporary folder (``data.name: shards``), a
batch at a time as in training (``omnissl.datasets.read_samples`` / ``read_stacks``).
Tokenising and augmenting run on both sides, so the ratio is what shards cost in a real loader.
The two loaders run side by side, one batch from each in turn, so drifts in machine load hit both;
the headline per side is the median over rounds, after one warm-up round (it opens the shards'
chunks, pages in the cache). Rates are per second of wall time and per second of this process's
CPU time (the one that load on a shared machine disturbs least; with workers it leaves theirs out).

    python benchmarks/stream_shards.py                                  # audio/mae-demo, 10 clips a digit
    python benchmarks/stream_shards.py image/mae-digits --batches 40
    python benchmarks/stream_shards.py splat/mae-demo data.per_class=10 --workers 2

The last line is the shards/cache samples-per-second ratio, of wall time and of CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from omnissl.build import build_dataset, build_modality
from omnissl.datasets import read_samples
from omnissl.datasets.shards import ShardDataset
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.shards import write_shards
from omnissl.tokens import TokenBatch
from omnissl.train.data import SeededBatchSampler, TokenDataset, make_loader

# The audio demo's clips, fewer voices: 10 digits x 3 voices x 2 speeds x 2 pitches = 120 clips.
AUDIO = ["data.voices=[en-us,en+f4,en-029]", "data.speeds=[140,180]", "data.pitches=[30,70]"]


def loader(dataset: object, modality: object, batch_size: int, workers: int, seed: int) -> Iterator[TokenBatch]:
    """Batches as the loop gets them: its sampler over every sample, ``make_loader``."""
    tokens = TokenDataset(dataset, modality)
    return iter(make_loader(tokens, SeededBatchSampler(np.arange(len(dataset)), batch_size, seed), workers))


def timed_round(sides: dict[str, Iterator[TokenBatch]], batches: int) -> dict[str, tuple[float, float]]:
    """Seconds of wall and of this process's CPU time each side took for ``batches`` batches, taken
    one batch from each side in turn (first side alternating), so load drifts hit both alike."""
    spent = {side: [0.0, 0.0] for side in sides}
    for b in range(batches):
        for side in (list(sides) if b % 2 == 0 else list(sides)[::-1]):
            start, cpu = time.perf_counter(), time.process_time()
            batch = next(sides[side])
            spent[side][0] += time.perf_counter() - start
            spent[side][1] += time.process_time() - cpu
            assert isinstance(batch, TokenBatch)
    return {side: (wall, cpu) for side, (wall, cpu) in spent.items()}


def read_cost(dataset: object, reads: int = 512) -> tuple[float, float]:
    """CPU microseconds a sample of ``dataset[i]`` and of the loader's batched read of 32
    (:func:`omnissl.datasets.read_samples`), no tokenising, over ``reads`` indices in random order."""
    order = np.random.default_rng(0).integers(0, len(dataset), reads).tolist()
    start = time.process_time()
    for i in order:
        dataset[i]
    one = (time.process_time() - start) / reads * 1e6
    start = time.process_time()
    for b in range(0, reads, 32):
        read_samples(dataset, order[b:b + 32])
    return one, (time.process_time() - start) / reads * 1e6


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default="audio/mae-demo")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30, help="batches per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1, as in a DataLoader worker)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = args.overrides or (AUDIO if args.recipe == "audio/mae-demo" else [])

    registry = get_registry()
    recipe = load_recipe(args.recipe, overrides, registry)
    modality = build_modality(recipe, registry)
    cache = build_dataset(recipe, registry)  # warm: the plugin's memory-mapped cache
    with tempfile.TemporaryDirectory(prefix="omnissl-shards-") as tmp:
        folder = Path(tmp) / "shards"
        meta = write_shards(recipe, registry, folder, progress=False)
        shards = ShardDataset(str(folder))
        print(f"{args.recipe}: {len(cache)} {meta['sample_kind'] or 'sample'}s, {meta['bytes'] / 1e6:.1f} MB of "
              f"shards in {meta['chunks']} chunk(s); batch {args.batch_size}, {args.workers} worker(s), "
              f"{args.batches} batches a round, {args.rounds} rounds", file=sys.stderr)
        wall: dict[str, list[float]] = {"cache": [], "shards": []}
        cpu: dict[str, list[float]] = {"cache": [], "shards": []}
        samples = args.batches * args.batch_size
        for round_ in range(args.rounds + 1):  # round 0 warms both sides up
            sides = {side: loader(dataset, modality, args.batch_size, args.workers, seed=round_)
                     for side, dataset in (("cache", cache), ("shards", shards))}
            for side, (seconds, cpu_seconds) in timed_round(sides, args.batches).items():
                if round_:
                    wall[side].append(samples / seconds)
                    cpu[side].append(samples / max(cpu_seconds, 1e-9))
        reads = {side: read_cost(dataset) for side, dataset in (("cache", cache), ("shards", shards))}
    median = {side: statistics.median(rates) for side, rates in wall.items()}
    median_cpu = {side: statistics.median(rates) for side, rates in cpu.items()}
    for side, label in (("cache", "plugin cache (memory-mapped)"), ("shards", "LitData shards (local disk) ")):
        print(f"{label}: {median[side]:,.0f} samples/s, {median_cpu[side]:,.0f} per CPU second  (rounds: "
              f"{', '.join(f'{r:,.0f}' for r in wall[side])})")
    print(f"reading alone, random order, us of CPU a sample: dataset[i] {reads['cache'][0]:.1f} from the cache, "
          f"{reads['shards'][0]:.1f} from the shards; batches of 32 {reads['cache'][1]:.1f} and {reads['shards'][1]:.1f}")
    ratio = median["shards"] / median["cache"]
    print(f"shards/cache samples per second: {ratio:.2f} (wall), "
          f"{median_cpu['shards'] / median_cpu['cache']:.2f} (CPU time)")
    return ratio


if __name__ == "__main__":
    main()
