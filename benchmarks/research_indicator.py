"""Experiment 1 of docs/research.md: is the validation loss an indicator of probe quality?

For one modality's MAE demo, a grid of encoder sizes x training lengths, at a demo budget:

1. one ``omnissl train`` per (size, length): ``encoder.dim``/``depth``/``heads`` from ``--sizes``,
   ``train.steps`` from ``--steps`` (separate runs, since the cosine schedule depends on the total
   number of steps; ``optim.warmup_steps`` is a tenth of them), ``--points`` validations and kept
   encoders per run, evenly spaced (``train.val_every = train.keep_checkpoints = steps / points``),
   the recipe's decoder, data, split, batch size and seed otherwise; no end-of-run probe or plots
   (the last kept checkpoint is the final encoder and is probed in step 2);
2. ``omnissl probe RUN --all-checkpoints``: linear and k-NN probes of every kept encoder on the
   recipe's held-out split (appended to ``RUN/probes.jsonl``);
3. ``omnissl compare RUN ... --out DIR/compare-linear`` (and ``--probe knn --out DIR/compare-knn``):
   Spearman's rho between validation loss and probe score over all points, within each run, and
   over the runs' final encoders; ``compare.md``, ``compare.json``, ``val_loss_vs_probe.png``;
4. for reference, ``omnissl probe`` of each size's longest run into ``DIR/reference-<size>.json``:
   its ``random`` column (a randomly initialised encoder of that size, the encoder at step 0) and
   ``baseline`` column (the modality's classical features), which no checkpoint changes.

Runs are trained one at a time. A run whose last kept checkpoint exists is not trained again (a
run cut short is trained again from the start, ``--overwrite``); a run whose ``probes.jsonl``
covers every kept checkpoint is not probed again; so the script can be stopped and started again.
It prints the markdown table (also written to ``DIR/table.md``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/research_indicator.py digits --out /tmp/exp1/digits
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/research_indicator.py eeg --out /tmp/exp1/eeg
    python benchmarks/research_indicator.py digits --out /tmp/exp1/digits --table-only

The validation loss is comparable across the sizes: every run holds out the same samples (the
digits: a random 20 % seeded by ``train.seed``, the same for all; EEG: the benchmark's own TEST
trials), validates on the same un-augmented batches in the same order (``train.val_batches``
batches of the held-out samples, set to cover all of them), and draws the mask of validation
batch i from ``step_generator(train.seed, 1, i)``, which depends on neither the step nor the
model, so every encoder, at every step, is scored on the same hidden tokens.

A folder is taken as done by what it holds (the last kept checkpoint, the probe lines), not by
the command that made it: change ``--sizes``/``--steps``/``--points`` with a fresh ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# modality -> (recipe, default sizes "dim x depth x heads", default lengths, overrides); demo budgets.
# The overrides make validation cover the whole held-out split: the digits' 359 held-out images are
# 3 batches of 128 (train.val_batches is 4); SCP1's 293 test trials are 5 batches of 64.
PRESETS: dict[str, tuple[str, str, str, list[str]]] = {
    "digits": ("image/mae-digits", "32x2x2,64x4x4,128x4x4", "50,100,200", []),
    "eeg": ("eeg/mae-demo", "32x2x2,64x4x4,128x4x4", "50,100,200", ["train.val_batches=5"]),
}


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for item in text.split(","):
        parts = item.strip().split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise SystemExit(f"--sizes: {item!r} is not DIMxDEPTHxHEADS (for example 64x4x4)")
        sizes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return sizes


def run_name(size: tuple[int, int, int], steps: int) -> str:
    return f"d{size[0]}x{size[1]}-s{steps}"


def run(cmd: list[str]) -> None:
    """Run one command; print it, then its wall and CPU time (user + system, this command alone)."""
    print("$ " + " ".join(cmd), flush=True)
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"  ({time.perf_counter() - start:.0f} s wall, {cpu:.0f} s CPU)", flush=True)


def kept_steps(folder: Path) -> list[int]:
    return sorted(int(p.stem[len("step-"):]) for p in (folder / "checkpoints").glob("step-*.pt")
                  if p.stem[len("step-"):].isdigit())


def probed_steps(folder: Path) -> set[int]:
    log = folder / "probes.jsonl"
    steps = set()
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            steps.add(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            continue  # a line cut short by a crash
    return steps


def train_and_probe(recipe: str, folder: Path, size: tuple[int, int, int], steps: int, points: int,
                    extra: list[str]) -> None:
    dim, depth, heads = size
    if steps % points:
        raise SystemExit(f"--steps {steps} is not a multiple of --points {points}: the kept encoders would not be "
                         f"evenly spaced and end at the final one")
    every = steps // points
    if steps not in kept_steps(folder):
        run([sys.executable, "-m", "omnissl", "train", recipe, "--out", str(folder), "--overwrite",
             f"encoder.dim={dim}", f"encoder.depth={depth}", f"encoder.heads={heads}", f"train.steps={steps}",
             f"optim.warmup_steps={max(1, steps // 10)}", f"train.val_every={every}",
             f"train.keep_checkpoints={every}", f"train.ckpt_every={steps}", "probe.enabled=false",
             "viz.enabled=false", *extra])
    if not set(kept_steps(folder)) <= probed_steps(folder):
        run([sys.executable, "-m", "omnissl", "probe", str(folder), "--all-checkpoints"])


def reference_table(out: Path, sizes: list[tuple[int, int, int]]) -> str:
    """Random-init and baseline probes per size, from DIR/reference-<size>.json."""
    lines = ["Reference probes, the same for every checkpoint of a size (probe.json's random and baseline columns)",
             "", "| encoder | random init linear | random init k-NN | baseline linear | baseline k-NN |",
             "|---|---|---|---|---|"]
    for dim, depth, _ in sizes:
        path = out / f"reference-d{dim}x{depth}.json"
        if path.exists():
            r = json.loads(path.read_text())
            lines.append(f"| d{dim}x{depth} | {r['random']['linear']:.4f} | {r['random']['knn']:.4f} | "
                         f"{r['baseline']['linear']:.4f} | {r['baseline']['knn']:.4f} |")
    return "\n".join(lines) + "\n"


def table(out: Path, names: list[str], probe: str) -> str:
    """The markdown table from DIR/compare-<probe>/compare.json."""
    data = json.loads((out / f"compare-{probe}" / "compare.json").read_text())

    def rho(c: dict[str, Any]) -> str:
        if c["rho"] is None:
            return f"n/a ({c['note']})"
        return f"{c['rho']:+.3f}" + (f" (p={c['p_value']:.2g})" if c.get("p_value") is not None else "")

    points = data["points"]
    within = [c["rho"] for c in data["per_run"].values() if c["rho"] is not None]
    lines = [f"Spearman's rho, validation loss vs {probe}-probe {data['metric']} (near -1: the loss ranks the "
             f"encoders as the probe does)", "",
             "| points | n | rho |", "|---|---|---|",
             f"| all checkpoints of all runs | {data['overall']['points']} | {rho(data['overall'])} |"]
    if "finals" in data:
        lines.append(f"| final encoders (one per run) | {data['finals']['points']} | {rho(data['finals'])} |")
    if within:
        lines.append(f"| within a run: min / median / max over {len(within)} runs | - | "
                     f"{min(within):+.3f} / {statistics.median(within):+.3f} / {max(within):+.3f} |")
    from omnissl.research.compare import spearman

    for size in dict.fromkeys(name.rsplit("-s", 1)[0] for name in names):  # one size, its runs pooled
        mine = [p for p in points if p["run"].rsplit("-s", 1)[0] == size and p["val_loss"] is not None
                and p["score"] is not None]
        c = spearman([p["val_loss"] for p in mine], [p["score"] for p in mine])
        lines.append(f"| all checkpoints of size {size} (its runs pooled) | {c.points} | {rho(c.__dict__)} |")
    lines += ["", f"| run | points | rho within the run | final val loss | final {probe} | best {probe} (step) |",
              "|---|---|---|---|---|---|"]
    for name in names:
        mine = [p for p in points if p["run"] == name]
        if not mine:
            continue
        last = max(mine, key=lambda p: p["step"])
        best = max((p for p in mine if p["score"] is not None), key=lambda p: p["score"])
        loss = "-" if last["val_loss"] is None else f"{last['val_loss']:.4f}"
        lines.append(f"| {name} | {data['per_run'][name]['points']} | {rho(data['per_run'][name])} | {loss} | "
                     f"{last['score']:.4f} | {best['score']:.4f} ({best['step']}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=sorted(PRESETS), help="the demo: " + ", ".join(
        f"{k} ({v[0]})" for k, v in PRESETS.items()))
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and the comparison")
    parser.add_argument("--sizes", help="comma-separated DIMxDEPTHxHEADS encoder sizes (default: the preset's)")
    parser.add_argument("--steps", help="comma-separated training lengths (default: the preset's)")
    parser.add_argument("--points", type=int, default=5, help="validations and kept encoders per run, evenly spaced")
    parser.add_argument("--table-only", action="store_true", help="compare and print the runs there are")
    args = parser.parse_args()
    recipe, sizes_text, steps_text, extra = PRESETS[args.modality]
    sizes = parse_sizes(args.sizes or sizes_text)
    lengths = [int(s) for s in (args.steps or steps_text).split(",")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    grid = [(size, steps) for size in sizes for steps in lengths]
    if not args.table_only:
        for size, steps in grid:
            train_and_probe(recipe, out / run_name(size, steps), size, steps, args.points, extra)
        for size in sizes:  # the random-init and baseline columns, once per size
            reference = out / f"reference-d{size[0]}x{size[1]}.json"
            if not reference.exists():
                run([sys.executable, "-m", "omnissl", "probe", str(out / run_name(size, max(lengths))), "--out",
                     str(reference)])
    names = [run_name(size, steps) for size, steps in grid if (out / run_name(size, steps) / "probes.jsonl").exists()]
    if not names:
        raise SystemExit(f"no probed runs in {out}")
    for probe in ("linear", "knn"):
        run([sys.executable, "-m", "omnissl", "compare", *(str(out / n) for n in names), "--out",
             str(out / f"compare-{probe}"), "--probe", probe])
    text = "\n".join([*(table(out, names, probe) for probe in ("linear", "knn")), reference_table(out, sizes)])
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
