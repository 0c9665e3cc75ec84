"""Training-step time of each latent objective's digits demo against MAE's, one process, one thread.

Each demo recipe (image/{mae,data2vec2,ijepa,lejepa}-digits) is built as `omnissl train` builds it;
every side runs the same batch of 64 tokenised digits (16 tokens each), a fresh mask per step
drawn through the objective (so data2vec2 masks each sample masks_per_sample times), forward,
backward, AdamW step and after_step (the EMA update). Rounds alternate the objectives so machine
load hits all alike; medians are reported.

    OMP_NUM_THREADS=1 python benchmarks/digits_objective_step.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from objective_probes import step_timer  # noqa: E402  (the probe table's timer: the same step)

NAMES = ["mae", "data2vec2", "ijepa", "lejepa"]
BATCH, WARMUP, ROUNDS, STEPS = 64, 5, 5, 10


def main() -> None:
    torch.set_num_threads(1)
    steps = {name: step_timer(f"image/{name}-digits", BATCH)[0] for name in NAMES}
    for name, step in steps.items():
        for k in range(WARMUP):
            step(k)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            times[name] += [step(k) for k in range(STEPS)]
    base = statistics.median(times["mae"])
    print(f"{'objective':<10} {'ms/step':>8} {'vs mae':>7}   (batch {BATCH}, 16 tokens, 1 thread)")
    for name in NAMES:
        ms = statistics.median(times[name])
        print(f"{name:<10} {1000 * ms:8.1f} {ms / base:7.2f}")


if __name__ == "__main__":
    main()
