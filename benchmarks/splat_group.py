"""Splat grouping time: omnissl's batched torch FPS + kNN against fpsample + the same kNN, one process.

Workload (issue 5): 32 objects x 8,192 Gaussians -> 64 groups of 32 Gaussians each, the
grouping of one ShapeSplat-size batch. Both sides get the same random xyz and start FPS at
each object's first point (agreement with each fpsample sampler is printed); all sides then run the
same batched kNN (``omnissl_splat.grouping.knn``), so the comparison isolates farthest-point
sampling. fpsample's side calls ``bucket_fps_kdline_sampling`` (QuickFPS, the fastest CPU
sampler in fpsample; the headline) and ``fps_sampling`` (its exact vanilla sampler, whose
centres omnissl's match index for index) once per object, as a CPU data pipeline would; omnissl's side is
``omnissl_splat.grouping.group_points`` on the whole batch. Sides alternate each round so
drift in machine load hits both alike; the median of the timed rounds is reported.

On CUDA (when available) omnissl's grouping is timed on the GPU and set against one MAE
training step of the ``splat/gaussian-mae-base`` model on the same batch (target: grouping
under 5% of a step).

    python benchmarks/splat_group.py
    python benchmarks/splat_group.py --rounds 9 --device cpu --threads 2

CPU timings use one torch thread by default (fpsample is single-threaded: one core each).

The last line is the omnissl/fpsample grouping-time ratio on CPU (lower is better for omnissl).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from omnissl_splat.grouping import group_points, knn

OBJECTS, POINTS, GROUPS, GROUP_SIZE = 32, 8192, 64, 32


def fpsample_grouping(xyz: torch.Tensor, valid: torch.Tensor, quick: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """fpsample per object (QuickFPS, or its exact vanilla sampler), then the shared batched kNN:
    (B, G) centres, (B, G, k) members."""
    import fpsample

    points = xyz.numpy()
    sample = ((lambda p: fpsample.bucket_fps_kdline_sampling(p, GROUPS, h=5, start_idx=0)) if quick
              else (lambda p: fpsample.fps_sampling(p, GROUPS, start_idx=0)))
    centres = torch.from_numpy(np.stack([sample(points[i]) for i in range(len(points))]).astype(np.int64))
    queries = torch.gather(xyz, 1, centres[..., None].expand(-1, -1, 3))
    return centres, knn(queries, xyz, valid, GROUP_SIZE)


def omnissl_grouping(xyz: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    groups = group_points(xyz, valid, GROUPS, GROUP_SIZE)
    return groups.centres, groups.members


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_cpu(xyz: torch.Tensor, valid: torch.Tensor, rounds: int) -> float:
    sides: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
        "omnissl": omnissl_grouping,
        "fpsample-quickfps": fpsample_grouping,
        "fpsample-vanilla": lambda x, v: fpsample_grouping(x, v, quick=False),
    }
    ours = omnissl_grouping(xyz, valid)[0]
    print(f"torch threads: {torch.get_num_threads()}")
    for name in ("fpsample-vanilla", "fpsample-quickfps"):
        peer = sides[name](xyz, valid)[0]
        same = (ours == peer).float().mean().item()
        print(f"centres identical (same order) to {name}: {100 * same:.1f}%")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        order = list(sides.items())
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(timed(lambda: fn(xyz, valid), xyz.device))
    med = {name: statistics.median(t) for name, t in times.items()}
    for name in sides:
        print(f"cpu  {name:<18} FPS + kNN  {1000 * med[name]:8.1f} ms / batch  "
              f"({OBJECTS * POINTS / med[name] / 1e6:.2f} M Gaussians/s)")
    return med["omnissl"] / med["fpsample-quickfps"]


def bench_cuda(xyz: torch.Tensor, valid: torch.Tensor, rounds: int) -> None:
    """Grouping time on the GPU against one bf16 Gaussian-MAE training step on the same batch."""
    from omnissl.build import build_encoder, build_masker, build_modality, build_objective
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe
    from omnissl.tokens import TokenBatch
    from omnissl.train.data import step_generator

    device = torch.device("cuda")
    xyz, valid = xyz.to(device), valid.to(device)
    omnissl_grouping(xyz, valid)
    group_ms = 1000 * statistics.median(timed(lambda: omnissl_grouping(xyz, valid), device) for _ in range(rounds))
    registry = get_registry()
    recipe = load_recipe("splat/gaussian-mae-base", ["data.root=.", f"train.batch_size={OBJECTS}"], registry)
    modality = build_modality(recipe, registry)
    objective = build_objective(recipe, registry, build_encoder(recipe, registry, modality), modality).to(device)
    masker = build_masker(recipe, registry)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    attributes = torch.rand(OBJECTS, POINTS, 14, device=device)
    attributes[..., :3] = xyz
    raw = TokenBatch(values=attributes, coords=xyz, pad=~valid)

    def step() -> None:
        batch = modality.on_device(raw)
        mask = masker(batch, step_generator(0, 0, device=device))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = objective(batch, mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    step_ms = 1000 * statistics.median(timed(step, device) for _ in range(rounds))
    print(f"cuda omnissl   FPS + kNN  {group_ms:8.1f} ms / batch")
    print(f"cuda gaussian-mae-base training step incl. grouping  {step_ms:8.1f} ms  "
          f"(grouping {100 * group_ms / step_ms:.1f}% of the step; target < 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fpsample is single-threaded, so one core each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xyz = torch.nn.functional.normalize(torch.randn(OBJECTS, POINTS, 3), dim=-1)  # Gaussians on unit spheres
    xyz = xyz * torch.rand(OBJECTS, POINTS, 1).pow(0.1)  # and just inside them
    valid = torch.ones(OBJECTS, POINTS, dtype=torch.bool)
    print(f"workload: {OBJECTS} objects x {POINTS} Gaussians -> {GROUPS} groups of {GROUP_SIZE}")
    if args.device == "auto" and torch.cuda.is_available():
        bench_cuda(xyz, valid, args.rounds)
    ratio = bench_cpu(xyz, valid, args.rounds)
    print(f"ratio omnissl/fpsample(QuickFPS) cpu FPS+kNN time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
