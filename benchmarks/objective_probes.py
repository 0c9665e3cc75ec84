"""The objectives' probe table at equal wall time: every objective gets the training time MAE gets.

For one modality, each arm (an objective with its masker) is a recipe: a shipped demo, or a
shipped demo with its `objective`/`masker` sections replaced. The harness

1. times each arm's training step as `omnissl train` builds it (the recipe's batch, a fresh mask
   drawn through the objective, forward, backward, AdamW, `after_step`), all arms interleaved in
   one process, one thread, medians;
2. gives each arm `budget / its step time` steps, where the budget is MAE's steps times MAE's
   step time (so the arms train for the same time on this machine; data loading, which is the
   same for every arm, is left out of the budget);
3. trains every arm with `omnissl train` for each seed (each run ends with the probes: linear and
   k-NN on the recipe's held-out split, pre-trained vs random init vs the modality's classical
   baseline), then writes one markdown table from the runs' probe.json.

Steps are counted, not timed, so the runs themselves may share the machine with other work:
the table does not depend on load, only step 1 does (run it on a quiet machine, or accept that
load shifts the ratios a little).

    OMP_NUM_THREADS=1 python benchmarks/objective_probes.py digits --out runs/objective-probes/digits
    OMP_NUM_THREADS=1 python benchmarks/objective_probes.py digits --out DIR --table-only
    OMP_NUM_THREADS=1 python benchmarks/objective_probes.py digits --out DIR --arms ibot,ibot+attmask --reference-steps 750

With ``--arms``, only those arms train, and a new plan times only them and the reference (MAE).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from omnissl import collate_tokens
from omnissl.build import build_all
from omnissl.objectives import draw_mask
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe, resolve_path
from omnissl.train.data import TokenDataset
from omnissl.train.optim import make_optimizer, peak_lr

# The digits demos' latent settings, for the modalities that ship one latent demo only.
DATA2VEC2 = {"name": "data2vec2", "masks_per_sample": 4, "top_k": 3, "target_norm": "instance", "momentum": 0.99,
             "decoder_dim": 64, "decoder_depth": 2, "decoder_heads": 4}
IJEPA = {"name": "ijepa", "pred_dim": 32, "pred_depth": 2, "pred_heads": 4, "momentum": 0.99, "loss": "l2"}
LEJEPA = {"name": "lejepa", "lamb": 0.05, "proj_dim": 64, "proj_hidden": 512, "num_slices": 256}
MULTIBLOCK = {"name": "multiblock", "num_targets": 4, "target_scale": [0.15, 0.2], "target_aspect": [0.75, 1.5],
              "context_scale": [0.85, 1.0]}

# Arms per modality: label -> (recipe, sections replaced in it). The first arm is the budget's
# reference (MAE, at its demo's number of steps).
ARMS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "digits": {
        "mae": ("image/mae-digits", {}),
        "simmim": ("image/mae-digits", {"objective": {"name": "simmim"},
                                        "masker": {"name": "block", "ratio": 0.5}}),
        "data2vec2": ("image/data2vec2-digits", {}),
        "ijepa": ("image/ijepa-digits", {}),
        "ibot": ("image/ibot-digits", {"masker": {"name": "block", "ratio": 0.4}}),
        "ibot+attmask": ("image/ibot-digits", {}),  # the demo's masker: attention
        "lejepa": ("image/lejepa-digits", {}),
    },
    "eeg": {
        "mae": ("eeg/mae-demo", {}),
        "data2vec2": ("eeg/mae-demo", {"objective": DATA2VEC2, "masker": {"name": "random", "ratio": 0.5}}),
        "ijepa": ("eeg/jepa-demo", {}),
        "lejepa": ("eeg/jepa-demo", {"objective": LEJEPA}),
    },
    "molecule": {
        "mae": ("molecule/mae-demo", {}),
        "data2vec2": ("molecule/data2vec2-demo", {}),
        "ijepa": ("molecule/data2vec2-demo", {"objective": IJEPA, "masker": MULTIBLOCK}),
        "lejepa": ("molecule/data2vec2-demo", {"objective": LEJEPA, "masker": MULTIBLOCK}),
    },
}


def arm_recipe(recipe: str, replace: dict[str, Any], path: Path) -> Path:
    """The arm's recipe as a file: the shipped one with whole sections replaced."""
    source = resolve_path(recipe, get_registry())
    text = source.read_text()
    if not replace:
        path.write_text(text)
        return path
    raw = yaml.safe_load(text)
    raw.update(replace)
    raw["description"] = f"{raw.get('description', recipe)} ({', '.join(f'{k}: {v}' for k, v in replace.items())})"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def step_timer(recipe_name: str, batch_size: int | None = None):
    """A function timing one training step of the recipe (``batch_size``: its own by default)
    on one fixed batch, and the loaded recipe."""
    registry = get_registry()
    recipe = load_recipe(recipe_name, [], registry)
    torch.manual_seed(0)
    parts = build_all(recipe, registry)
    tokens = TokenDataset(parts.dataset, parts.modality)
    size = min(batch_size or recipe.train.batch_size, len(parts.dataset))
    batch = collate_tokens([tokens[(i, i)] for i in range(size)])
    objective = parts.objective.train()
    optimizer = make_optimizer(objective, recipe.optim, peak_lr(recipe.optim, size), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)

    def step(k: int) -> float:
        began = time.perf_counter()
        mask = draw_mask(objective, parts.masker, batch, generator)
        objective(batch, mask).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(objective, "after_step"):
            objective.after_step(k, 1000)
        return time.perf_counter() - began

    return step, recipe


def measure(paths: dict[str, Path], rounds: int = 5, steps: int = 4) -> tuple[dict[str, float], dict[str, Any]]:
    torch.set_num_threads(1)
    timers = {label: step_timer(str(path)) for label, path in paths.items()}
    for step, _ in timers.values():
        for k in range(2):
            step(k)
    times: dict[str, list[float]] = {label: [] for label in timers}
    for _ in range(rounds):
        for label, (step, _) in timers.items():
            times[label] += [step(k) for k in range(steps)]
    return ({label: statistics.median(t) for label, t in times.items()},
            {label: recipe for label, (_, recipe) in timers.items()})


def table(out: Path, seeds: list[int]) -> str:
    plan = json.loads((out / "plan.json").read_text())
    rows = ["| objective | steps | ms/step | linear (seeds) | k-NN (seeds) | random init linear / k-NN | baseline linear / k-NN |",
            "|---|---|---|---|---|---|---|"]
    for label, arm in plan["arms"].items():
        reports = []
        for seed in seeds:
            path = out / f"{label}-s{seed}" / "probe.json"
            if path.exists():
                reports.append(json.loads(path.read_text()))
        if not reports:
            rows.append(f"| {label} | {arm['steps']} | {arm['ms']:.0f} | not run | | | |")
            continue

        def cell(side: str, probe: str) -> str:
            values = [r[side][probe] for r in reports]
            return " / ".join(f"{v:.3f}" for v in values) + (f" (mean {statistics.mean(values):.3f})" if len(values) > 1 else "")

        def pair(side: str) -> str:
            cells = [f"{r[side]['linear']:.3f} / {r[side]['knn']:.3f}" for r in reports]
            return " · ".join(dict.fromkeys(cells))  # once where the seeds agree (the baseline does)

        rows.append(f"| {label} | {arm['steps']} | {arm['ms']:.0f} | {cell('pretrained', 'linear')} | "
                    f"{cell('pretrained', 'knn')} | {pair('random')} | {pair('baseline')} |")
    metric = next((json.loads(p.read_text())["metric"] for p in out.glob("*/probe.json")), "score")
    return "\n".join(rows) + f"\n\n({metric}; seeds {', '.join(map(str, seeds))}; budget {plan['budget_s']:.0f} s of steps)\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=sorted(ARMS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--arms", default=None, help="comma-separated subset of the arms")
    parser.add_argument("--reference-steps", type=int, default=None,
                        help="MAE's steps (default: its recipe's train.steps)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        arms = ARMS[args.modality]
        chosen = args.arms.split(",") if args.arms else list(arms)
        plan_path = out / "plan.json"
        unknown = [label for label in chosen if label not in arms]
        if unknown:
            parser.error(f"--arms: no arm {', '.join(unknown)} for {args.modality}; choose from {', '.join(arms)}")
        if plan_path.exists():
            plan = json.loads(plan_path.read_text())
            missing = [label for label in chosen if label not in plan["arms"]]
            if missing:
                parser.error(f"{plan_path} was planned without {', '.join(missing)}: give a new --out")
        else:
            reference = next(iter(arms))
            # The reference and the arms asked for are timed together (all of them by default).
            timed = [label for label in arms if label == reference or label in chosen]
            paths = {label: arm_recipe(*arms[label], out / f"{label}.yaml") for label in timed}
            ms, recipes = measure(paths)
            ref_steps = args.reference_steps or recipes[reference].train.steps
            budget = ref_steps * ms[reference]
            plan = {"budget_s": budget, "reference": reference, "arms": {
                label: {"recipe": str(paths[label]), "ms": 1000 * ms[label],
                        "steps": max(50, round(budget / ms[label])),
                        "warmup": recipes[label].optim.warmup_steps} for label in timed}}
            plan_path.write_text(json.dumps(plan, indent=2))
        for seed in seeds:
            for label in chosen:
                arm = plan["arms"][label]
                run = out / f"{label}-s{seed}"
                if (run / "probe.json").exists():
                    continue
                warmup = min(arm["warmup"], arm["steps"] // 10)
                cmd = [sys.executable, "-m", "omnissl", "train", arm["recipe"], "--out", str(run), "--overwrite",
                       f"train.steps={arm['steps']}", f"train.seed={seed}", "data.split_seed=0", f"probe.seed={seed}", f"optim.warmup_steps={warmup}",
                       f"train.val_every={max(1, arm['steps'] // 4)}", f"train.ckpt_every={arm['steps']}"]
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
    for seed in seeds:  # runs trained before the harness seeded the probes: probe them with the seed
        for run in sorted(out.glob(f"*-s{seed}")):
            stamp = run / "probe_seed.txt"
            if (run / "probe.json").exists() and seed != 0 and not stamp.exists():
                recipe = yaml.safe_load((run / "recipe.yaml").read_text())
                if recipe.get("probe", {}).get("seed", 0) != seed:
                    subprocess.run([sys.executable, "-m", "omnissl", "probe", str(run), f"probe.seed={seed}"],
                                   check=True, stdout=subprocess.DEVNULL)
                stamp.write_text(f"{seed}\n")
    print(table(out, seeds))


if __name__ == "__main__":
    main()
