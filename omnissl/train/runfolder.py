"""The run folder's rules: what may be written, when, and what a resume may change.

- A folder that already holds a run is never started over silently: ``--resume`` continues
  it, ``--overwrite`` removes its files first; anything else is refused.
- A resume is checked (recipe, checkpoint, shapes) before anything in the folder is written,
  so a resume that fails leaves the folder as it was.
- A resumed run compares its resolved recipe with the one the run was trained with; a change
  that would alter training is refused unless asked for (``--allow-recipe-change``), and every
  recipe a run used is kept in ``recipe_history.yaml`` with the step it took effect.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from omnissl.errors import OmnisslError, TrainingError
from omnissl.plugins import Registry
from omnissl.train.checkpoint import write_text_atomic
from omnissl.recipe import (COMPONENTS, CORE_DEFAULTS, INJECTED, SECTIONS, Recipe, factory_parameters, load_yaml,
                            validate)

METRICS = "metrics.jsonl"
DATA_SUMMARY = "data.json"
RECIPE = "recipe.yaml"
HISTORY = "recipe_history.yaml"
# What `omnissl train` writes into a run folder (and --overwrite removes); nothing else is touched.
RUN_FILES = (RECIPE, HISTORY, DATA_SUMMARY, METRICS, "checkpoints", "tensorboard", "loss_curve.png",
             "reconstruction.png", "probe.json", "probes.jsonl", "phases.jsonl")
# Keys a resume may change without altering the weights: logging, validation, checkpoints,
# probes, plots, data-loading workers (the data do not depend on them) and the device.
HARMLESS = ("description", "probe.", "viz.", "finetune.", "data.num_workers", "train.log_every", "train.val_every",
            "train.val_batches", "train.ckpt_every", "train.device", "train.keep_checkpoints")


def existing_run(out_dir: Path) -> list[str]:
    """The run files already in ``out_dir``."""
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def check_start(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an old one, or to resume where there is nothing to resume."""
    if resume and overwrite:
        raise OmnisslError("--resume and --overwrite contradict each other: pick one")
    found = existing_run(out_dir)
    if not resume and found and not overwrite:
        raise OmnisslError(f"{out_dir} already holds a run ({', '.join(found)}); add --resume to continue it, "
                           f"--overwrite to start it over, or pick another --out")
    if resume and not (out_dir / "checkpoints" / "last.pt").is_file():
        what = (f"it holds {', '.join(found)} but no checkpoint (the run stopped before its first "
                f"checkpoint)" if found else "it holds no run")
        raise OmnisslError(f"cannot --resume {out_dir}: {what}; start it over with --overwrite")


def remove_run(out_dir: Path) -> None:
    """Remove the files of the run in ``out_dir`` (``--overwrite``); other files stay."""
    for name in existing_run(out_dir):
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resolved(recipe: Recipe, registry: Registry) -> dict[str, Any]:
    """The recipe with every default filled in: what the run really uses."""
    out: dict[str, Any] = {}
    if "description" in recipe.raw:
        out["description"] = recipe.raw["description"]
    for section, kind in COMPONENTS.items():
        options = dict(recipe.raw[section])
        params = factory_parameters(registry.get(kind, options["name"]), kind)
        defaults = {name: p.default for name, p in params.items()
                    if p.default is not inspect.Parameter.empty and name not in INJECTED.get(kind, ())}
        out[section] = {"name": options.pop("name"), **_plain(defaults), **options}
        for key, default in CORE_DEFAULTS.get(section, {}).items():
            out[section].setdefault(key, default)
    for section in SECTIONS:
        out[section] = dataclasses.asdict(getattr(recipe, section))
    return out


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Signature defaults as YAML would write them (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()
            if v is None or isinstance(v, (bool, int, float, str, list, tuple, dict))}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``key -> (old, new)`` for every key whose value differs (missing on one side: None)."""
    a, b = _flat(old), _flat(new)
    # A component swapped for another explains everything under it: such keys come first.
    keys = sorted(set(a) | set(b), key=lambda key: (not key.endswith(".name"), key))
    return {key: (a.get(key), b.get(key)) for key in keys if a.get(key) != b.get(key)}


def is_harmless(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HARMLESS)


def describe_changes(changes: dict[str, tuple[Any, Any]], limit: int = 6) -> str:
    shown = [f"{key} {old!r} -> {new!r}" for key, (old, new) in list(changes.items())[:limit]]
    more = f" (and {len(changes) - limit} more)" if len(changes) > limit else ""
    return ", ".join(shown) + more


def stored_recipe(out_dir: Path, registry: Registry, step: int) -> dict[str, Any]:
    """The resolved recipe that trained the run in ``out_dir`` up to its checkpoint at ``step``."""
    history = [entry for entry in read_history(out_dir) if entry.get("step", 0) < step]
    if history:
        return history[-1]["recipe"]
    raw, text = load_yaml(out_dir / RECIPE)
    try:
        return resolved(validate(raw, registry, str(out_dir / RECIPE), text), registry)
    except OmnisslError as exc:
        raise TrainingError(f"cannot --resume {out_dir}: its {RECIPE} does not validate here ({exc})") from None


def check_resume_recipe(out_dir: Path, recipe: Recipe, registry: Registry, step: int,
                        allow_changes: bool) -> dict[str, tuple[Any, Any]]:
    """The recipe changes of this resume; raises when one would alter training and is not allowed."""
    changes = recipe_changes(stored_recipe(out_dir, registry, step), resolved(recipe, registry))
    altering = {k: v for k, v in changes.items() if not is_harmless(k)}
    if altering and not allow_changes:
        raise TrainingError(
            f"--resume {out_dir}: the recipe differs from the one the run was trained with: "
            f"{describe_changes(altering)}. A resumed run reproduces an uninterrupted one only with the same "
            f"recipe; to apply these changes from step {step} on, add --allow-recipe-change")
    return changes


def read_history(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / HISTORY
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text()) or []
    return entries if isinstance(entries, list) else []


def write_recipe(out_dir: Path, recipe: Recipe, registry: Registry, step: int,
                 changes: dict[str, tuple[Any, Any]] | None) -> None:
    """``recipe.yaml`` (the recipe as given) and the history of resolved recipes."""
    history = [entry for entry in read_history(out_dir) if entry.get("step", 0) < step]
    if changes is None or changes or not history:
        entry: dict[str, Any] = {"step": step}
        if changes:
            entry["changed"] = {key: [old, new] for key, (old, new) in changes.items()}
        entry["recipe"] = resolved(recipe, registry)
        history.append(entry)
    write_text_atomic(out_dir / HISTORY, yaml.safe_dump(history, sort_keys=False), "recipe history")
    write_text_atomic(out_dir / RECIPE, yaml.safe_dump(recipe.raw, sort_keys=False), "recipe")


def load_training_state(objective: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                        path: Path) -> None:
    """Load a checkpoint's model and optimiser; a mismatch is one line naming what differs."""
    mine = objective.state_dict()
    theirs = state["model"]
    missing = [k for k in mine if k not in theirs]
    extra = [k for k in theirs if k not in mine]
    shapes = [f"{k} is {list(theirs[k].shape)} there, {list(mine[k].shape)} here" for k in mine
              if k in theirs and hasattr(theirs[k], "shape") and theirs[k].shape != mine[k].shape]
    problems = ([f"{len(missing)} weights missing from it (first: {missing[0]})"] if missing else []) + \
               ([f"{len(extra)} weights this model does not have (first: {extra[0]})"] if extra else []) + \
               ([f"{len(shapes)} shapes differ (first: {shapes[0]})"] if shapes else [])
    if problems:
        raise TrainingError(f"checkpoint {path} does not fit this recipe's model: {'; '.join(problems)}. "
                            f"Resume with the recipe the run was trained with")
    objective.load_state_dict(theirs)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as exc:
        raise TrainingError(f"checkpoint {path}: the optimiser state does not fit this recipe ({exc})") from None


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None and path.exists():  # resuming: drop what came after the checkpoint
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= keep_until]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept), "metrics log")
        elif keep_until is None:
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a line cut short by a crash or a full disk is dropped with
    a warning."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}, line {number}: dropping a record that was not written completely "
                          f"(a crash or a full disk): {line[:60]!r}")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
