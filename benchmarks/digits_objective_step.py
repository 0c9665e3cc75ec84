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
import time

import torch

from omnissl import collate_tokens
from omnissl.build import build_all
from omnissl.objectives import draw_mask
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train.data import TokenDataset
from omnissl.train.optim import make_optimizer, peak_lr

NAMES = ["mae", "data2vec2", "ijepa", "lejepa"]
BATCH, WARMUP, ROUNDS, STEPS = 64, 5, 5, 10


def setup(name: str):
    registry = get_registry()
    recipe = load_recipe(f"image/{name}-digits", [], registry)
    torch.manual_seed(0)
    parts = build_all(recipe, registry)
    tokens = TokenDataset(parts.dataset, parts.modality)
    batch = collate_tokens([tokens[(i, i)] for i in range(BATCH)])
    objective = parts.objective.train()
    optimizer = make_optimizer(objective, recipe.optim, peak_lr(recipe.optim, BATCH), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)

    def step(k: int) -> None:
        mask = draw_mask(objective, parts.masker, batch, generator)
        objective(batch, mask).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(objective, "after_step"):
            objective.after_step(k, 1000)

    return step


def main() -> None:
    torch.set_num_threads(1)
    steps = {name: setup(name) for name in NAMES}
    for name, step in steps.items():
        for k in range(WARMUP):
            step(k)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            for k in range(STEPS):
                began = time.perf_counter()
                step(k)
                times[name].append(time.perf_counter() - began)
    base = statistics.median(times["mae"])
    print(f"{'objective':<10} {'ms/step':>8} {'vs mae':>7}   (batch {BATCH}, 16 tokens, 1 thread)")
    for name in NAMES:
        ms = statistics.median(times[name])
        print(f"{name:<10} {1000 * ms:8.1f} {ms / base:7.2f}")


if __name__ == "__main__":
    main()
