"""``omnissl finetune``: a run's pre-trained encoder plus a task head, trained end to end on
labelled data, beside the same fine-tuning from a random initialisation of the same shape.

Each fine-tuning is an ordinary run folder trained by the one loop (``omnissl.train``): its
``recipe.yaml`` is the pre-training run's recipe with the ``finetune`` objective (which loads
the run's ``checkpoints/encoder.safetensors``), no masking, and MAE's fine-tuning settings; so
checkpoints, ``--resume``, ``metrics.jsonl`` and the non-finite checks are the pre-training
ones. Both sides keep the pre-training run's held-out split (``data.split_seed``), so the
numbers sit beside its probes; ``finetune.json`` reports them in probe.json's layout.

Layout of ``--out DIR``::

    DIR/finetune.json            pre-trained vs from scratch (and the probes), per label fraction
    DIR/label_efficiency.png     with several fractions
    DIR/<fraction>/pretrained/   a run folder (recipe.yaml, metrics.jsonl, checkpoints/, ...)
    DIR/<fraction>/scratch/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from omnissl.build import build_encoder, build_modality, build_objective
from omnissl.errors import OmnisslError
from omnissl.plugins import Registry
from omnissl.recipe import Recipe, apply_overrides, load_yaml, validate
from omnissl.train.checkpoint import ENCODER, LAST, load_checkpoint, write_text_atomic
from omnissl.train.data import TokenDataset, fixed_batches, label_subset, make_loader, task_of
from omnissl.eval.run import evaluation_data, evaluation_fraction
from omnissl.train.loop import pick_device, split_seed, train
from omnissl.train.runfolder import RECIPE

RESULT = "finetune.json"
# MAE's fine-tuning recipe (He et al. 2022, table 9), with a lr and length for small data; a
# recipe's own `finetune:` section and the command line's overrides go on top, in that order.
DEFAULTS = {
    "optim": {"lr": 5.0e-4, "weight_decay": 0.05, "betas": [0.9, 0.999], "layer_decay": 0.75, "min_lr": 1.0e-6},
    "train": {"steps": 300, "log_every": 10, "val_every": 100, "ckpt_every": 100},
    "objective": {"label_smoothing": 0.1},
    "encoder": {"drop_path": 0.1},
}


def finetune(run_dir: Path, out_dir: Path, registry: Registry, overrides: Sequence[str] = (), *,
             fractions: Sequence[float] = (1.0,), compare_scratch: bool = True, resume: bool = False,
             overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune ``run_dir``'s encoder (and, with ``compare_scratch``, a random one) at each
    fraction of the labelled training samples; write ``out_dir/finetune.json`` and return it."""
    base, source = _base_recipe(run_dir, registry)
    _check_out(out_dir, resume, overwrite)
    init = run_dir / "checkpoints" / ENCODER
    if not init.is_file():
        raise OmnisslError(f"{run_dir} has no {init.relative_to(run_dir)}: its training has not finished; finish it "
                           f"with `omnissl train {run_dir / RECIPE} --out {run_dir} --resume` first")
    # The data (with the command line's data.* overrides), its labels and the run's split.
    probe_recipe = validate(apply_overrides(base, [o for o in overrides if o.startswith("data.")]), registry,
                            source, None, overrides)
    # A mistake in an override is reported before the data are read (the head is filled in below).
    _recipe(base, source, registry, overrides, {"task": "classification", "num_outputs": 2}, probe_recipe,
            init=init, fraction=max(fractions), n_train=2)
    dataset, split = evaluation_data(probe_recipe, registry)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise OmnisslError("fine-tuning needs labels and this data set has none; give a labelled data set of the "
                           "modality with data.* overrides (class folders, a label column)")
    labels = np.asarray(labels, dtype=np.float64)
    task = task_of(dataset, labels)
    head = _head(dataset, labels, split.train, task)

    report: dict[str, Any] = {"run": str(run_dir), "task": task, "split": split.info, "overrides": list(overrides),
                              "label_fractions": {}}
    inits = ("pretrained", "scratch") if compare_scratch else ("pretrained",)
    for fraction in fractions:
        row: dict[str, Any] = {}
        for kind in inits:
            sub = out_dir / f"{fraction:g}" / kind if len(fractions) > 1 else out_dir / kind
            recipe = _recipe(base, source, registry, overrides, head, probe_recipe,
                             init=init if kind == "pretrained" else None, fraction=fraction,
                             n_train=len(label_subset(labels, split.train, fraction, 0, task)))
            print(f"fine-tuning the {kind} encoder on {fraction:.0%} of the labels -> {sub}", file=sys.stderr,
                  flush=True)
            # The data set built above serves every run, unless the recipe's finetune: section changes it.
            same = recipe.component("data") == probe_recipe.component("data")
            scores = _train_and_score(recipe, registry, sub, dataset if same else None, resume)
            row[kind] = {"finetune": scores["value"], **scores["extra"]}
            row["num_train"], row["num_test"], row["metric"] = scores["num_train"], scores["num_test"], scores["metric"]
        report["label_fractions"][f"{fraction:g}"] = row
        _write(out_dir, report)
    last = report["label_fractions"][f"{fractions[-1]:g}"]
    report.update({k: v for k, v in last.items()})  # probe.json's layout for the last (usually full) fraction
    probe = run_dir / "probe.json"
    if probe.is_file():
        report["probe"] = json.loads(probe.read_text())
    _write(out_dir, report)
    if len(fractions) > 1:
        from omnissl.viz import plot_label_efficiency

        plot_label_efficiency(report["label_fractions"], report["metric"], out_dir / "label_efficiency.png",
                              "fine-tuning: label efficiency")
    return report


def _write(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / RESULT, json.dumps(report, indent=2) + "\n", "fine-tuning report")


def _check_out(out_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise OmnisslError("--resume and --overwrite contradict each other: pick one")
    if out_dir.exists() and any(out_dir.iterdir()) and not (resume or overwrite):
        raise OmnisslError(f"{out_dir} already holds fine-tuning runs; add --resume to continue them, --overwrite to "
                           f"start them over, or pick another --out")


def _base_recipe(run_dir: Path, registry: Registry) -> tuple[dict[str, Any], str]:
    path = run_dir / RECIPE
    if not path.is_file():
        raise OmnisslError(f"{run_dir} is not a run folder: it has no recipe.yaml (was it written by omnissl train?)")
    raw, _ = load_yaml(path)
    return raw, str(path)


def _head(dataset: Any, labels: np.ndarray, train_idx: np.ndarray, task: str) -> dict[str, Any]:
    """The head's size, and for regression the training targets' mean and standard deviation."""
    known = labels[train_idx][np.isfinite(labels[train_idx])]
    if len(known) < 2:
        raise OmnisslError(f"the training split has {len(known)} labelled samples; fine-tuning needs at least 2")
    if task == "regression":
        return {"task": task, "num_outputs": 1, "target_mean": float(known.mean()),
                "target_std": float(known.std()) or 1.0}
    classes = getattr(dataset, "classes", None)
    finite = labels[np.isfinite(labels)]
    count = max(len(classes) if classes else 0, int(finite.max()) + 1)
    if finite.min() < 0 or not np.allclose(finite, np.round(finite)):
        raise OmnisslError("classification labels must be class indices 0, 1, ...; this data set's are not")
    return {"task": task, "num_outputs": count}


def _recipe(base: dict[str, Any], source: str, registry: Registry, overrides: Sequence[str], head: dict[str, Any],
            probe_recipe: Recipe, *, init: Path | None, fraction: float,
            n_train: int) -> Recipe:
    """The fine-tuning recipe: the run's, with the fine-tuning objective, no masking, MAE's
    fine-tuning settings, the recipe's ``finetune:`` section and the command line on top."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items() if k != "finetune"}
    raw["objective"] = {"name": "finetune", **head, "init": str(init.resolve()) if init else None,
                        "label_fraction": float(fraction)}
    raw["masker"] = {"name": "none"}
    for section, values in DEFAULTS.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    raw["optim"].pop("base_lr", None)
    raw["optim"]["warmup_steps"] = None  # a tenth of the steps unless set (below)
    raw["train"]["seed"] = probe_recipe.train.seed
    raw["data"]["split_seed"] = split_seed(probe_recipe)
    # Train on exactly the training side of the split it is scored on (a run with val_fraction 0
    # is scored on 20 %: those samples must not be trained on).
    raw["data"]["val_fraction"] = evaluation_fraction(probe_recipe)
    raw["probe"] = {**(raw.get("probe") or {}), "enabled": False}
    raw["viz"] = {**(raw.get("viz") or {}), "enabled": False}
    tune = [f"{k}={json.dumps(v)}" for k, v in (base.get("finetune") or {}).items()]
    raw = apply_overrides(raw, [*tune, *overrides])
    t = raw["train"]
    # A batch never outgrows the labelled samples (1 % of a small set is a few dozen).
    t["batch_size"] = max(1, min(int(t.get("batch_size", 64)), n_train))
    if t.get("micro_batch_size") and (t["micro_batch_size"] > t["batch_size"]
                                      or t["batch_size"] % t["micro_batch_size"]):
        t.pop("micro_batch_size")
    if raw["optim"].get("warmup_steps") is None:
        raw["optim"]["warmup_steps"] = max(1, int(t.get("steps", 300)) // 10)
    if raw["objective"].get("init") is None:  # from scratch: L2-SP toward a random start means nothing
        raw["objective"]["l2_sp"] = 0.0
    return validate(raw, registry, f"{source} (fine-tuning)", None, overrides)


def _train_and_score(recipe: Recipe, registry: Registry, out: Path, dataset: Any, resume: bool) -> dict[str, Any]:
    """Train one fine-tuning run folder (or continue / reuse it) and score it on the held-out split."""
    score_file = out / "score.json"
    checkpoint = (out / "checkpoints" / LAST).is_file()
    if resume and checkpoint and score_file.is_file():  # finished and scored before the interruption
        return json.loads(score_file.read_text())
    if out.exists() and not (resume and checkpoint):  # --overwrite, or killed before its first checkpoint
        from omnissl.train.runfolder import remove_run

        remove_run(out)
        score_file.unlink(missing_ok=True)
    train(recipe, registry, out, resume=resume and checkpoint, dataset=dataset)
    scores = score_finetuned(out, registry, dataset)
    write_text_atomic(score_file, json.dumps(scores, indent=2) + "\n", "fine-tuning score")
    return scores


@torch.no_grad()
def score_finetuned(run_dir: Path, registry: Registry, dataset: Any = None) -> dict[str, Any]:
    """The fine-tuned model of ``run_dir`` on its labelled held-out samples: the probes' metric
    (``probe.metric``: accuracy / balanced_accuracy, r2 / rmse) and the others of its task."""
    from sklearn import metrics

    raw, text = load_yaml(run_dir / RECIPE)
    recipe = validate(raw, registry, str(run_dir / RECIPE), text)
    modality = build_modality(recipe, registry)
    dataset, split = evaluation_data(recipe, registry, dataset)
    encoder = build_encoder(recipe, registry, modality)
    options = dict(recipe.raw["objective"], init=None)  # the checkpoint holds the weights
    objective = build_objective(_with(recipe, objective=options), registry, encoder, modality)
    objective.load_state_dict(load_checkpoint(run_dir / "checkpoints" / LAST)["model"])
    device = pick_device(recipe.train.device)
    objective.to(device).eval()
    tokens = TokenDataset(dataset, modality)
    labels = tokens.labels.astype(np.float64)
    test_idx = split.held_out[np.isfinite(labels[split.held_out])]
    if len(test_idx) == 0:
        raise OmnisslError("the held-out split has no labelled samples to score the fine-tuned model on")
    predictions = []
    for batch in make_loader(tokens, fixed_batches(test_idx, recipe.probe.batch_size), 0):
        batch = modality.on_device(batch.to(device))
        predictions.append(objective.predict(batch).cpu().numpy())
    predicted, truth = np.concatenate(predictions), labels[test_idx]
    metric = recipe.probe.metric
    if objective.task == "classification":
        chosen = predicted.argmax(-1)
        values = {"accuracy": metrics.accuracy_score(truth.astype(int), chosen),
                  "balanced_accuracy": metrics.balanced_accuracy_score(truth.astype(int), chosen)}
        metric = metric if metric in values else "accuracy"
    else:
        values = {"r2": metrics.r2_score(truth, predicted),
                  "rmse": float(np.sqrt(metrics.mean_squared_error(truth, predicted)))}
        metric = metric if metric in values else "r2"
    train_count = int(json.loads((run_dir / "data.json").read_text())["split"].get("labelled_train", 0)) \
        if (run_dir / "data.json").is_file() else 0
    return {"metric": metric, "value": float(values[metric]),
            "extra": {f"finetune_{k}": float(v) for k, v in values.items() if k != metric},
            "num_train": train_count, "num_test": int(len(test_idx))}


def _with(recipe: Recipe, **sections: Any) -> Recipe:
    from dataclasses import replace

    return replace(recipe, raw={**recipe.raw, **sections})


def format_report(report: dict[str, Any]) -> str:
    """The fine-tuning report as text: per label fraction, pre-trained vs from scratch."""
    from omnissl.eval.probe import format_curve

    lines = [format_curve(report["label_fractions"], report["metric"])]
    split = report.get("split", {})
    where = f"{split.get('kind', '?')} split"
    if split.get("held_out_groups"):
        where += f", {split['held_out_groups']} held-out {split['group_kind']}s"
    lines.append(f"(fine-tuned end to end; {report['num_test']} held-out samples, {where})")
    return "\n".join(lines)
