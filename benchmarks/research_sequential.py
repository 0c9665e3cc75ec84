"""Experiment 3 of docs/research.md: sequential pre-training on the digits, and forgetting.

Two phases of ``image/mae-digits`` with different data: the digits 0-4, then the digits 5-9
(``data.classes`` of the ``digits`` data set), each phase half of ``--steps`` optimiser steps
(a demo budget). Three arms per seed (``train.seed``; ``data.split_seed=0`` everywhere):

- ``seq``: ``data.phases`` without replay;
- ``replay``: the same with ``data.replay`` (default 0.25: 32 of each 128-sample batch of the
  second phase come from a reservoir of the first phase's samples);
- ``joint``: both phases at once for the same total steps: the full digits data set restricted
  (``data.subset``) to exactly the union of the two phases' training samples, with
  ``data.val_fraction=0`` so that no phase's held-out sample is ever trained on or split off
  differently (the joint run has no validation loss; it is probed on the phases' splits below).

Each phase is split on its own (20 % held out, ``data.split_seed=0``), as ``data.phases`` does.
The sequential arms probe themselves at the end of each phase on every phase so far
(``phases.jsonl``: a linear and a k-NN probe fitted on the phase's training samples, scored on
its held-out ones). The joint run's final encoder is probed by the same function
(``omnissl.research.forgetting.phase_probe_records``) on the same phase splits, and so is each
sequential run's final encoder, which must reproduce its own ``phases.jsonl`` (a check of the
tooling; the script stops if it does not). The random-init encoder and the raw pixels are
probed on each phase as reference rows.

Runs are trained one at a time with ``--no-probe`` (a phased run's ``probe.json`` would probe
the top-level data set, not the phases); a finished run (its ``probes.json`` here) is skipped
and one with a checkpoint is resumed. It prints the markdown tables (also ``DIR/table.md``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/research_sequential.py --out /tmp/exp23/sequential
    OMP_NUM_THREADS=1 python benchmarks/research_sequential.py --out DIR --steps 600 --arms seq,replay \
        --phase-schedule restart        # the learning-rate schedule again in phase 2
    python benchmarks/research_sequential.py --out /tmp/exp23/sequential --table-only
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
import torch

RECIPE = "image/mae-digits"
GROUPS = ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
ARMS = ("seq", "replay", "joint")
LABELS = {"seq": "sequential, no replay", "replay": "sequential, replay {replay}",
          "joint": "joint (both phases at once)"}


def phase_overrides(steps: int) -> list[str]:
    half = steps // 2
    phases = ", ".join(f"{{classes: {list(g)}, steps: {n}}}" for g, n in zip(GROUPS, (half, steps - half)))
    return [f"data.phases=[{phases}]"]


def common(steps: int, seed: int) -> list[str]:
    return [f"train.steps={steps}", f"train.seed={seed}", f"probe.seed={seed}", "data.split_seed=0",
            "data.val_fraction=0.2", f"optim.warmup_steps={max(1, steps // 10)}",
            f"train.val_every={max(1, steps // 4)}", f"train.ckpt_every={max(1, steps // 4)}"]


def phased_setup(steps: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """The phased recipe, its data (:class:`PhasedData`), its split and the modality."""
    from omnissl.build import build_modality
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe
    from omnissl.research.phases import build_phases, parse_phases, split_phases
    from omnissl.train.loop import split_seed

    registry = get_registry()
    recipe = load_recipe(RECIPE, common(steps, seed) + phase_overrides(steps), registry)
    data = build_phases(parse_phases(recipe.raw["data"]), registry, recipe.source)
    split = split_phases(data, recipe.get("data", "val_fraction"), split_seed(recipe), recipe.get("data", "split"))
    return recipe, data, split, build_modality(recipe, registry)


def joint_subset(path: Path, data: Any, split: Any) -> None:
    """The union of the phases' training samples, as indices into the full digits data set."""
    rows = []
    for p, train in enumerate(split.train):
        rows += data.datasets[p].indices[train - data.offsets[p]].tolist()
    lines = ["# union of the training splits of the two phases (digits 0-4, 5-9), data.split_seed=0",
             "# ids: indices", f"# {len(rows)} samples"] + [str(i) for i in sorted(rows)]
    path.write_text("\n".join(lines) + "\n")


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def train(out: Path, arm: str, seed: int, steps: int, replay: float, subset: Path, schedule: str = "continue") -> Path:
    folder = out / f"{arm}-{seed}"
    if (folder / "probes.json").exists():
        return folder
    flags = ["--resume"] if (folder / "checkpoints" / "last.pt").exists() else ["--overwrite"]
    phased = phase_overrides(steps) + [f"data.phase_schedule={schedule}"]
    extra = {"seq": phased, "replay": phased + [f"data.replay={replay}"], "joint": [f"data.subset={subset}"]}[arm]
    args = common(steps, seed) + extra
    if arm == "joint":
        args = [a for a in args if not a.startswith("data.val_fraction")] + ["data.val_fraction=0"]
    run([sys.executable, "-m", "omnissl", "train", RECIPE, "--out", str(folder), *flags, "--no-probe", *args])
    return folder


def probe(folder: Path, arm: str, setup: tuple[Any, Any, Any, Any]) -> dict[str, Any]:
    """Per phase: the score after its own phase and at the end, the forgetting (linear, k-NN)."""
    from omnissl.eval.run import load_run
    from omnissl.plugins import get_registry
    from omnissl.research.forgetting import forgetting, phase_probe_records, read_phase_records
    from omnissl.research.phases import PhaseProbe
    from omnissl.train.data import TokenDataset
    from omnissl.train.loop import pick_device

    recipe, data, split, modality = setup
    _, _, encoder = load_run(folder, get_registry())
    device = pick_device("cpu")
    tokens = TokenDataset(data, modality)
    pool = recipe.probe.pool or modality.readout
    steps = recipe.train.steps
    final = phase_probe_records(encoder, tokens, split, PhaseProbe(steps, len(GROUPS) - 1, tuple(range(len(GROUPS)))),
                                recipe.probe, device, pool)
    logged = read_phase_records(folder)
    if arm != "joint":  # the loop's own probes: the same function must give the same final numbers
        last = {r["phase"]: r for r in logged if r["step"] == steps}
        for r in final:
            for key in ("linear", "knn"):
                if abs(r[key] - last[r["phase"]][key]) > 1e-9:
                    raise SystemExit(f"{folder}: phase {r['phase']} {key} probed again is {r[key]}, phases.jsonl "
                                     f"says {last[r['phase']][key]}: the phase probes are not reproducible")
    records = logged if arm != "joint" else final
    return {"metric": final[0]["metric"], "num": {r["phase"]: [r["num_train"], r["num_test"]] for r in final},
            **{key: {str(q): v for q, v in forgetting(records, key).items()} for key in ("linear", "knn")}}


def references(setup: tuple[Any, Any, Any, Any], seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """The random-init encoder (seeded as ``omnissl probe`` seeds it) and raw pixels, per phase."""
    from omnissl.build import build_encoder
    from omnissl.eval.probe import _labelled, baseline, encode, score_columns
    from omnissl.plugins import get_registry
    from omnissl.train.data import TokenDataset

    recipe, data, split, modality = setup
    torch.manual_seed(recipe.probe.seed + 1)
    random_init = build_encoder(recipe, get_registry(), modality)
    tokens = TokenDataset(data, modality)
    labels = tokens.labels.astype(np.float64)
    pool = recipe.probe.pool or modality.readout
    out: dict[str, dict[str, dict[str, float]]] = {}
    for q in range(len(GROUPS)):
        train_idx = _labelled(split.train[q], [labels])[: recipe.probe.max_samples]
        test_idx = _labelled(split.held_out[q], [labels])[: recipe.probe.max_samples]
        device = torch.device("cpu")
        features = {"random": (encode(random_init, tokens, train_idx, recipe.probe.batch_size, device, pool),
                               encode(random_init, tokens, test_idx, recipe.probe.batch_size, device, pool)),
                    "baseline": (baseline(tokens, train_idx), baseline(tokens, test_idx))}
        report = score_columns(features, labels[train_idx], labels[test_idx], "classification", recipe.probe)
        out[str(q)] = {side: report[side] for side in ("random", "baseline")}
    return out


def table(out: Path, seeds: list[int], replay: float) -> str:
    results = {(arm, s): json.loads(p.read_text()) for arm in ARMS for s in seeds
               if (p := out / f"{arm}-{s}" / "probes.json").exists()}
    refs = {s: json.loads(p.read_text()) for s in seeds if (p := out / f"references-{s}.json").exists()}

    def fmt(values: list[float | None], signed: bool = False) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "-"
        form = "{:+.3f}" if signed else "{:.3f}"
        text = " / ".join(form.format(v) for v in known)
        return text + f" (mean {form.format(statistics.mean(known))})" if len(known) > 1 else text

    text = []
    for probe_name in ("linear", "knn"):
        title = "linear probe" if probe_name == "linear" else "k-NN probe"
        lines = [f"**{title}** (accuracy on each phase's held-out split; seeds {', '.join(map(str, seeds))})", "",
                 "| run | phase 1 (0-4) after phase 1 | phase 1 at the end | forgetting | phase 2 (5-9) at the end |",
                 "|---|---|---|---|---|"]
        for arm in ARMS:
            rows = [results[(arm, s)][probe_name] for s in seeds if (arm, s) in results]
            if not rows:
                lines.append(f"| {LABELS[arm].format(replay=replay)} | not run | | | |")
                continue
            after = fmt([r["0"]["after_own_phase"] for r in rows]) if arm != "joint" else "n/a"
            end0 = fmt([r["0"]["final"] for r in rows])
            end1 = fmt([r["1"]["final"] for r in rows])
            forgot = fmt([r["0"]["forgetting"] for r in rows], signed=True) if arm != "joint" else "n/a"
            lines.append(f"| {LABELS[arm].format(replay=replay)} | {after} | {end0} | {forgot} | {end1} |")
        for side, label in (("random", "random init"), ("baseline", "raw pixels")):
            if refs:
                values = [[refs[s][q][side][probe_name] for s in refs] for q in ("0", "1")]
                lines.append(f"| *{label}* | | {fmt(values[0])} | | {fmt(values[1])} |")
        text.append("\n".join(lines))
    sizes = next(iter(results.values()))["num"] if results else None
    note = ""
    if sizes:
        note = (f"\n(each phase split on its own, 20 % held out, data.split_seed=0: phase 1 {sizes['0'][0]} train / "
                f"{sizes['0'][1]} held-out, phase 2 {sizes['1'][0]} / {sizes['1'][1]}; forgetting = after its phase "
                f"minus at the end, positive is forgotten)\n")
    return "\n\n".join(text) + "\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and the table")
    parser.add_argument("--steps", type=int, default=200, help="total optimiser steps per run (each phase half)")
    parser.add_argument("--replay", type=float, default=0.25, help="data.replay of the replay arm")
    parser.add_argument("--seeds", default="0,1", help="comma-separated train.seed values")
    parser.add_argument("--phase-schedule", choices=["continue", "restart"], default="continue",
                        help="data.phase_schedule of the sequential arms: one learning-rate schedule over both "
                             "phases, or one per phase")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs there are")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if not arms or any(a not in ARMS for a in arms):
        parser.error(f"--arms: choose from {', '.join(ARMS)}, got {args.arms!r}")
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for seed in seeds:
            setup = phased_setup(args.steps, seed)
            subset = out / "joint-train.txt"
            if not subset.exists():  # the split does not depend on train.seed (data.split_seed=0)
                joint_subset(subset, setup[1], setup[2])
            refs = out / f"references-{seed}.json"
            if not refs.exists():
                refs.write_text(json.dumps(references(setup, seed), indent=2) + "\n")
            for arm in arms:
                folder = train(out, arm, seed, args.steps, args.replay, subset, args.phase_schedule)
                if not (folder / "probes.json").exists():
                    (folder / "probes.json").write_text(json.dumps(probe(folder, arm, setup), indent=2) + "\n")
    text = table(out, seeds, args.replay)
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
