"""The matrix products of a ViT-Tiny training step on this CPU: torch's BLAS against numpy's.

iBOT's and I-JEPA's CPU steps are two-thirds matrix products (``objective_step.py``), and both
sides of that benchmark call the same torch kernels, so how fast those products run bounds
either side. This measures the linear layers' products of a ViT-Tiny block at iBOT's global
batch (32 samples x 2 views x 196 tokens = 12,544 rows): forward ``x @ W.T``, and the backward's
input gradient ``dy @ W`` and weight gradient ``dy.T @ x``, each

* with torch (``torch.mm``; the BLAS torch was built with, MKL for the x86 wheels) into a fresh
  output, as an eager training step allocates it,
* with torch into an output allocated once (what the product costs without fresh pages),
* with numpy (``np.matmul``; the BLAS numpy was built with, OpenBLAS for the PyPI wheels) into
  an output allocated once.

Same inputs, same threads (torch's and numpy's default, the machine's cores). Medians of
``--repeats`` calls after one warm-up, in GFLOP/s.

    python benchmarks/cpu_gemm.py
    python benchmarks/cpu_gemm.py --rows 1024 --repeats 3      # quick

The last line is the ratio of torch's time into reused outputs to numpy's, median over the
products (above 1: numpy's BLAS is faster on this CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch

# (in, out) of the linear layers of a ViT-Tiny block: qkv, proj, fc1, fc2.
LAYERS = {"qkv": (192, 576), "proj": (192, 192), "fc1": (192, 768), "fc2": (768, 192)}


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12544, help="token rows (iBOT's global views at batch 32)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads, BLAS "
          f"{'MKL' if torch.backends.mkl.is_available() else 'other'}), numpy {np.__version__}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.rows} rows; GFLOP/s")
    print(f"{'product':<22} {'torch fresh':>11} {'torch reused':>13} {'numpy reused':>13}")
    ratios = []
    for name, (k, n) in LAYERS.items():
        m = args.rows
        x, w, dy = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)
        products = {"forward": (x, w.t()), "input grad": (dy, w), "weight grad": (dy.t(), x)}
        for what, (a, b) in products.items():
            out = torch.empty(a.shape[0], b.shape[1])
            a_np, b_np, out_np = a.numpy(), b.numpy(), out.numpy()
            flop = 2 * a.shape[0] * a.shape[1] * b.shape[1]
            fresh = timed(lambda: torch.mm(a, b), args.repeats)
            reused = timed(lambda: torch.mm(a, b, out=out), args.repeats)
            numpy = timed(lambda: np.matmul(a_np, b_np, out=out_np), args.repeats)
            ratios.append(reused / numpy)
            print(f"{name + ' ' + what:<22} {flop / fresh / 1e9:11.0f} {flop / reused / 1e9:13.0f} "
                  f"{flop / numpy / 1e9:13.0f}")
    print(f"torch/numpy time ratio, reused outputs (median over {len(ratios)} products): "
          f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
