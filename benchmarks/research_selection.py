"""Experiment 2 of docs/research.md: which samples are worth pre-training on?

On the digits demo (``image/mae-digits``) at a demo budget of ``--steps`` optimiser steps per run:

1. the reference run trains on 100 % of the training split (``train.seed=0``); it is also the
   table's "100 %, seed 0" row (the same command would train it again, bit for bit);
2. for each seed s, ``omnissl select`` keeps ``--keep`` (30 %) of the reference run's training
   split by ``loss`` (the hardest), by ``redundancy`` (SemDeDup) and at ``random``
   (``--seed s``), and a fresh run pre-trains on each subset (``data.subset``,
   ``train.seed=s``) for the same number of steps, so a subset run sees each of its samples
   about 3.3 times as often; a run on 100 % with ``train.seed=s`` is the control;
3. every run ends with the probes of ``omnissl train``: linear and k-NN on the same held-out
   split (``data.split_seed=0`` for every run: a random 20 % of the 1,797 digits, 359 samples,
   never selected), pre-trained vs randomly initialised encoder vs the raw-pixel baseline.

Runs are trained one at a time; a run whose ``probe.json`` exists is skipped, one with a
checkpoint is resumed, so the script can be stopped and started again. It prints the markdown
table (also written to ``DIR/table.md``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/research_selection.py --out /tmp/exp23/selection
    python benchmarks/research_selection.py --out /tmp/exp23/selection --table-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("loss", "redundancy", "random")
RECIPE = "image/mae-digits"


def train_command(run: Path, steps: int, seed: int, extra: list[str]) -> list[str]:
    """``omnissl train`` for one run at the demo budget; resumes a run cut short."""
    flags = ["--resume"] if (run / "checkpoints" / "last.pt").exists() else ["--overwrite"]
    return [sys.executable, "-m", "omnissl", "train", RECIPE, "--out", str(run), *flags,
            f"train.steps={steps}", f"train.seed={seed}", f"probe.seed={seed}", "data.split_seed=0",
            f"optim.warmup_steps={max(1, steps // 10)}", f"train.val_every={max(1, steps // 4)}",
            f"train.ckpt_every={max(1, steps // 3)}", *extra]


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def arms(seeds: list[int]) -> dict[str, dict[int, str]]:
    """Row label -> seed -> run folder name."""
    rows = {"100 %": {s: "reference" if s == 0 else f"all-{s}" for s in seeds}}
    for by in METHODS:
        label = {"loss": "30 % by loss (hardest)", "redundancy": "30 % by redundancy",
                 "random": "30 % at random"}[by]
        rows[label] = {s: f"{by}-{s}" for s in seeds}
    return rows


def per_digit(out: Path, label: str, seeds: list[int]) -> str:
    """How evenly a row's training samples cover the ten digits: the fewest and most of one digit,
    per seed (the subsets' files; the 100 % row: the whole training split)."""
    from omnissl.research.select import read_subset
    from omnissl.train.data import held_out_split
    from omnissl_image.datasets import DigitsDataset

    labels = DigitsDataset().labels
    spans = []
    for seed in seeds:
        if label == "100 %":  # every run's split: data.split_seed=0, the recipe's 20 % held out
            counts = np.bincount(labels[held_out_split(DigitsDataset(), 0.2, 0, "auto").train], minlength=10)
            return f"{counts.min()}-{counts.max()}"
        path = out / "subsets" / f"{arms(seeds)[label][seed].rsplit('-', 1)[0]}-{seed}.txt"
        if path.exists():
            counts = np.bincount(labels[[int(i) for i in read_subset(path)[0]]], minlength=10)
            spans.append(f"{counts.min()}-{counts.max()}")
    return " / ".join(spans) or "-"


def table(out: Path, seeds: list[int], keep: float) -> str:
    def report(name: str) -> dict[str, Any] | None:
        path = out / name / "probe.json"
        return json.loads(path.read_text()) if path.exists() else None

    def cells(values: list[float | None]) -> list[str]:
        known = [v for v in values if v is not None]
        mean = f"{statistics.mean(known):.3f}" if len(known) == len(values) and known else "-"
        return [f"{v:.3f}" if v is not None else "not run" for v in values] + [mean]

    head = " | ".join([f"linear (seed {s})" for s in seeds] + ["linear mean"] +
                      [f"k-NN (seed {s})" for s in seeds] + ["k-NN mean"])
    lines = [f"| training data | samples | per digit (min-max) | {head} |",
             "|---|---|---|" + "---|" * (2 * len(seeds) + 2)]
    reports = {label: {s: report(name) for s, name in runs.items()} for label, runs in arms(seeds).items()}
    for label, by_seed in reports.items():
        samples = {r["num_train"] if label == "100 %" else None for r in by_seed.values() if r}
        subset = next((json.loads((out / name / "data.json").read_text()).get("split", {}).get("subset_samples")
                       for name in arms(seeds)[label].values() if (out / name / "data.json").exists()), None)
        count = subset or next(iter(samples - {None}), "-")
        lin = cells([r["pretrained"]["linear"] if r else None for r in by_seed.values()])
        knn = cells([r["pretrained"]["knn"] if r else None for r in by_seed.values()])
        lines.append(f"| {label} | {count} | {per_digit(out, label, seeds)} | " + " | ".join(lin + knn) + " |")
    for side, label in (("random", "random init (100 % runs' encoder shape)"), ("baseline", "raw pixels")):
        by_seed = reports["100 %"]
        lin = cells([r[side]["linear"] if r else None for r in by_seed.values()])
        knn = cells([r[side]["knn"] if r else None for r in by_seed.values()])
        lines.append(f"| *{label}* | - | - | " + " | ".join(lin + knn) + " |")
    any_report = next((r for rs in reports.values() for r in rs.values() if r), None)
    note = ""
    if any_report:
        split = any_report["split"]
        note = (f"\n({any_report['metric']} on the held-out split: {split['kind']}, {split['held_out']} held-out "
                f"samples, data.split_seed=0 for every run; probes fitted on the {any_report['num_train']} labelled "
                f"training samples, all runs alike; {any_report['pool']} pooling; keep {keep})\n")
    return "\n".join(lines) + "\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs, subsets and table")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps of every run (demo budget)")
    parser.add_argument("--keep", type=float, default=0.3, help="the fraction each selection keeps")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (train.seed and select --seed)")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs there are")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        reference = out / "reference"
        if not (reference / "probe.json").exists():
            run(train_command(reference, args.steps, 0, []))
        (out / "subsets").mkdir(exist_ok=True)
        for seed in seeds:
            for by in METHODS:
                subset = out / "subsets" / f"{by}-{seed}.txt"
                if not subset.exists():
                    run([sys.executable, "-m", "omnissl", "select", str(reference), "--by", by, "--keep",
                         str(args.keep), "--seed", str(seed), "--out", str(subset)])
                target = out / f"{by}-{seed}"
                if not (target / "probe.json").exists():
                    run(train_command(target, args.steps, seed, [f"data.subset={subset}"]))
            if seed != 0 and not (out / f"all-{seed}" / "probe.json").exists():
                run(train_command(out / f"all-{seed}", args.steps, seed, []))
    text = table(out, seeds, args.keep)
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
