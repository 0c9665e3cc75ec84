"""Frozen-encoder probes: linear and k-NN on pooled features, side by side for the
pre-trained encoder, a randomly initialised one of the same shape, and the
modality's classical baseline on the raw input.

The gap between the first two columns is what pre-training bought; the third
says whether it beats what a field's practitioner would try first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from omnissl.errors import DataError, OmnisslError
from omnissl.recipe import ProbeConfig
from omnissl.train.checkpoint import write_text_atomic
from omnissl.train.data import TokenDataset, fixed_batches, label_subset, make_loader, task_of


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise OmnisslError("probes need scikit-learn: pip install 'omnissl[eval]'") from exc
    from sklearn import linear_model, metrics, neighbors, pipeline, preprocessing

    return linear_model, metrics, neighbors, pipeline, preprocessing


@torch.no_grad()
def encode(encoder: torch.nn.Module, tokens: TokenDataset, indices: np.ndarray, batch_size: int,
           device: torch.device, pool: str = "mean") -> np.ndarray:
    """Pooled encoder features of un-augmented samples: (len(indices), dim or 2 * dim)."""
    encoder.eval()
    out = []
    for batch in make_loader(tokens, fixed_batches(indices, batch_size), 0):
        batch = tokens.modality.on_device(batch.to(device))
        features = encoder.forward_batch(batch)
        out.append(encoder.pool(features.float(), batch.pad, pool).cpu().numpy())
    return np.concatenate(out)


def baseline(tokens: TokenDataset, indices: np.ndarray) -> np.ndarray | None:
    rows = []
    for i in indices:
        row = tokens.modality.baseline_features(tokens.dataset[int(i)])
        if row is None:
            return None
        rows.append(np.asarray(row, dtype=np.float64).ravel())
    return np.stack(rows)


def score_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   task: str, config: ProbeConfig) -> dict[str, float]:
    """Fit a linear and a k-NN probe on train, score on test."""
    linear_model, metrics, neighbors, pipeline, preprocessing = _sklearn()
    k = max(1, min(config.knn_k, len(train_y) - 1))
    if task == "classification":
        linear = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                        linear_model.LogisticRegression(max_iter=3000, C=1.0))
        knn = pipeline.make_pipeline(preprocessing.Normalizer(),
                                     neighbors.KNeighborsClassifier(k, weights="distance"))
        score = metrics.balanced_accuracy_score if config.metric == "balanced_accuracy" else metrics.accuracy_score
        result = {}
        for name, model in (("linear", linear), ("knn", knn)):
            model.fit(train_x, train_y.astype(int))
            result[name] = float(score(test_y.astype(int), model.predict(test_x)))
        return result
    linear = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                    linear_model.RidgeCV(alphas=np.logspace(-3, 3, 13)))
    knn = pipeline.make_pipeline(preprocessing.StandardScaler(), neighbors.KNeighborsRegressor(k, weights="distance"))
    result = {}
    for name, model in (("linear", linear), ("knn", knn)):
        model.fit(train_x, train_y)
        pred = model.predict(test_x)
        result[name] = float(metrics.r2_score(test_y, pred))
        result[f"{name}_rmse"] = float(np.sqrt(metrics.mean_squared_error(test_y, pred)))
    return result


def run_probes(pretrained: torch.nn.Module, random_init: torch.nn.Module, tokens: TokenDataset,
               train_idx: np.ndarray, test_idx: np.ndarray, config: ProbeConfig, device: torch.device,
               out_path: Path | None = None, *, pool: str | None = None, test_tokens: TokenDataset | None = None,
               fractions: Sequence[float] = ()) -> dict[str, Any]:
    """Probe both encoders and the baseline; write ``probe.json`` when ``out_path`` is given.

    The report is about the data set's ``labels``; a data set with several named ``targets``
    (a dict of per-sample arrays) gets one more report per target under ``"targets"``.
    ``test_tokens``: ``test_idx`` indexes this other data set (a given test set) instead of
    ``tokens``. ``fractions``: also probe with that fraction of the labelled training samples
    (per class), under ``"label_fractions"`` (the label-efficiency curve). Features are computed
    once per encoder for all of it.
    """
    test_tokens = tokens if test_tokens is None else test_tokens
    if tokens.labels is None or test_tokens.labels is None:
        raise DataError("this data set has no labels, so it cannot be probed; use a labelled data set "
                        "(image folders with class sub-folders, or a set with a label column)")
    columns = {"labels": (tokens.labels.astype(np.float64), test_tokens.labels.astype(np.float64), None)}
    targets = getattr(tokens.dataset, "targets", None)
    test_targets = getattr(test_tokens.dataset, "targets", None)
    if isinstance(targets, dict) and len(targets) > 1 and isinstance(test_targets, dict):
        declared = getattr(tokens.dataset, "target_tasks", None) or {}
        for name, values in targets.items():
            if name in test_targets:
                columns[str(name)] = (np.asarray(values, dtype=np.float64),
                                      np.asarray(test_targets[name], dtype=np.float64), declared.get(name))
    # Samples labelled in any column, capped: the rows every feature matrix holds.
    train_idx = _labelled(train_idx, [c[0] for c in columns.values()])[: config.max_samples]
    test_idx = _labelled(test_idx, [c[1] for c in columns.values()])[: config.max_samples]
    pool = pool or config.pool or getattr(tokens.modality, "readout", "mean")
    features = probe_features(pretrained, random_init, tokens, train_idx, test_tokens, test_idx, config, device,
                              pool)
    report: dict[str, Any] = {}
    for name, (train_values, test_values, declared) in columns.items():
        try:
            task = task_of(tokens.dataset if name == "labels" else None, train_values, declared)
            sub = score_columns(features, train_values[train_idx], test_values[test_idx], task, config)
            if name == "labels" and fractions:
                sub["label_fractions"] = score_fractions(features, train_values[train_idx], test_values[test_idx],
                                                         task, config, fractions)
        except DataError as exc:
            if name == "labels":
                raise
            sub = {"skipped": str(exc)}  # one sparse target does not stop the others
        if name == "labels":
            report.update(sub)
        else:
            report.setdefault("targets", {})[name] = sub
    report["pool"] = pool
    if out_path is not None:
        write_text_atomic(out_path, json.dumps(report, indent=2) + "\n", "probe report")
    return report


def _labelled(indices: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    indices = np.asarray(indices)
    keep = np.zeros(len(indices), dtype=bool)
    for values in columns:
        keep |= np.isfinite(values[indices])
    return indices[keep]


Features = dict[str, tuple[np.ndarray, np.ndarray]]  # column -> (train rows, test rows)


def probe_features(pretrained: torch.nn.Module, random_init: torch.nn.Module, tokens: TokenDataset,
                   train_idx: np.ndarray, test_tokens: TokenDataset, test_idx: np.ndarray, config: ProbeConfig,
                   device: torch.device, pool: str) -> Features:
    """Pooled features of both encoders, and the baseline's, for the train and test samples."""
    features: Features = {}
    for name, encoder in (("pretrained", pretrained), ("random", random_init)):
        features[name] = (encode(encoder, tokens, train_idx, config.batch_size, device, pool),
                          encode(encoder, test_tokens, test_idx, config.batch_size, device, pool))
    base_train = baseline(tokens, train_idx)
    if base_train is not None:
        features["baseline"] = (base_train, baseline(test_tokens, test_idx))
    return features


def score_columns(features: Features, y_train: np.ndarray, y_test: np.ndarray, task: str, config: ProbeConfig,
                  rows: np.ndarray | None = None) -> dict[str, Any]:
    """Linear and k-NN probes of every feature column, on the labelled rows (``rows`` of the
    training rows only, when given)."""
    train_rows = np.flatnonzero(np.isfinite(y_train))
    if rows is not None:
        train_rows = np.intersect1d(train_rows, rows)
    test_rows = np.flatnonzero(np.isfinite(y_test))
    if len(train_rows) < 2 or len(test_rows) < 1:
        raise DataError(f"too few labelled samples to probe ({len(train_rows)} train, {len(test_rows)} test)")
    fits = {"classification": ("accuracy", "balanced_accuracy"), "regression": ("r2", "rmse")}[task]
    report: dict[str, Any] = {}
    for name, (x_train, x_test) in features.items():
        report[name] = score_features(x_train[train_rows], y_train[train_rows], x_test[test_rows], y_test[test_rows],
                                      task, config)
    report["metric"] = config.metric if config.metric in fits else fits[0]  # "auto", or another target's kind
    report["task"] = task
    report["num_train"], report["num_test"] = int(len(train_rows)), int(len(test_rows))
    return report


def score_fractions(features: Features, y_train: np.ndarray, y_test: np.ndarray, task: str, config: ProbeConfig,
                    fractions: Sequence[float]) -> dict[str, Any]:
    """The probes at each fraction of the labelled training rows (drawn per class, seeded by
    ``probe.seed``): the label-efficiency curve."""
    out = {}
    for fraction in fractions:
        rows = label_subset(y_train, np.arange(len(y_train)), fraction, config.seed, task)
        out[f"{fraction:g}"] = score_columns(features, y_train, y_test, task, config, rows)
    return out


def format_table(report: dict[str, Any]) -> str:
    """The probe report as a small text table."""
    if "skipped" in report:
        return f"probes skipped: {report['skipped']}"
    columns = [c for c in ("pretrained", "random", "baseline") if c in report]
    probes = [p for p in report[columns[0]]]
    metric = report["metric"]
    width = max(len(p) for p in probes) + len(metric) + 3
    lines = [f"{'probe (' + metric + ')':<{width}}" + "".join(f"{c:>12}" for c in columns)]
    for probe in probes:
        label = probe if probe.endswith("rmse") else f"{probe} ({metric})"
        lines.append(f"{label:<{width}}" + "".join(f"{report[c].get(probe, float('nan')):>12.4f}" for c in columns))
    split = report.get("split", {})
    where = f", {split['kind']} split" if split else ""
    if split.get("held_out_groups"):
        where += f", {split['held_out_groups']} held-out {split['group_kind']}s"
    lines.append(f"({report['num_train']} train / {report['num_test']} held-out samples{where})")
    if "pool" in report:
        lines[-1] = lines[-1][:-1] + f", {report['pool']} pooling)"
    for name, sub in report.get("targets", {}).items():
        lines.append(f"\ntarget {name}:")
        lines.append(format_table(sub))
    return "\n".join(lines)


def format_curve(curve: dict[str, dict[str, Any]], metric: str) -> str:
    """A label-efficiency curve (``{fraction: {column: {probe: value}, "num_train": n}}``) as a
    text table: one row per fraction, one column per encoder and probe."""
    fractions = list(curve)
    columns = [(c, p) for c, probes in curve[fractions[0]].items() if isinstance(probes, dict)
               for p in probes if p in ("linear", "knn", "finetune")]
    names = [f"{c} {p}" for c, p in columns]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'labels':<10}{'train':>7}" + "".join(f"{n:>{width}}" for n in names) + f"   ({metric})"]
    for fraction in fractions:
        row = curve[fraction]
        cells = "".join(f"{row[c][p]:>{width}.4f}" for c, p in columns)
        lines.append(f"{float(fraction):<10.0%}{row['num_train']:>7}" + cells)
    return "\n".join(lines)


PROBES_LOG = "probes.jsonl"  # one line per kept checkpoint: `omnissl probe RUN --all-checkpoints`


def probe_checkpoints(run_dir: Path, registry: Any, overrides: Sequence[str] = (),
                      out: Path | None = None) -> list[dict[str, Any]]:
    """Probe every kept checkpoint (``checkpoints/step-<s>.pt``) of ``run_dir`` in step order,
    appending one JSON line per checkpoint to ``out`` (default ``run_dir/probes.jsonl``).

    Each line holds the step, the validation loss logged at that step in ``metrics.jsonl``
    (null when none was: keep checkpoints at multiples of ``train.val_every``), and the linear
    and k-NN probes of that checkpoint's encoder, fitted and scored exactly as ``probe.json``'s
    ``pretrained`` column (same split, samples, pooling and probe settings). The random and
    baseline columns do not depend on the checkpoint and stay in ``probe.json``.
    """
    from omnissl.eval.run import probe_setup
    from omnissl.research.checkpoints import kept_checkpoints, load_kept_encoder
    from omnissl.train.loop import pick_device
    from omnissl.train.runfolder import METRICS, read_metrics

    kept = kept_checkpoints(run_dir)
    if not kept:
        raise OmnisslError(f"{run_dir} has no kept checkpoints (checkpoints/step-<s>.pt); train with "
                           f"train.keep_checkpoints=N to keep the encoder every N steps")
    out = out or run_dir / PROBES_LOG
    setup = probe_setup(run_dir, registry, overrides)
    tokens, config = setup.tokens, setup.recipe.probe
    if tokens.labels is None:
        raise DataError("this data set has no labels, so its checkpoints cannot be probed; probe another, "
                        "labelled data set of this modality (data.* overrides)")
    metrics = run_dir / METRICS
    val_loss = {int(r["step"]): float(r["val_loss"]) for r in (read_metrics(metrics) if metrics.is_file() else [])
                if "val_loss" in r}
    labels = tokens.labels.astype(np.float64)
    train_idx = _labelled(setup.train_idx, [labels])[: config.max_samples]
    test_idx = _labelled(setup.test_idx, [labels])[: config.max_samples]
    task = task_of(tokens.dataset, labels)
    device = pick_device(setup.recipe.train.device)
    encoder = setup.pretrained.to(device)
    records = []
    for step, path in kept:
        load_kept_encoder(path, encoder)
        features = {"pretrained": (encode(encoder, tokens, train_idx, config.batch_size, device, setup.pool),
                                   encode(encoder, tokens, test_idx, config.batch_size, device, setup.pool))}
        report = score_columns(features, labels[train_idx], labels[test_idx], task, config)
        record = {"step": step, "val_loss": val_loss.get(step), **report["pretrained"], "metric": report["metric"],
                  "task": task, "num_train": report["num_train"], "num_test": report["num_test"],
                  "pool": setup.pool, "checkpoint": path.name}
        if overrides:
            record["overrides"] = list(overrides)
        append_json_line(out, record)
        records.append(record)
    return records


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk: a crash loses at most the line being written,
    which readers drop (:func:`omnissl.train.runfolder.read_metrics`)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def format_checkpoints(records: Sequence[dict[str, Any]]) -> str:
    """Per-checkpoint probe records as a text table: step, validation loss, probes."""
    if not records:
        return "no checkpoints probed"
    probes = [k for k in ("linear", "knn") if k in records[0]]
    metric = records[0]["metric"]
    lines = [f"{'step':>8}{'val loss':>12}" + "".join(f"{p + ' (' + metric + ')':>20}" for p in probes)]
    for r in records:
        loss = "-" if r.get("val_loss") is None else f"{r['val_loss']:.4f}"
        lines.append(f"{r['step']:>8}{loss:>12}" + "".join(f"{r[p]:>20.4f}" for p in probes))
    return "\n".join(lines)
