"""Frozen-encoder probes: linear and k-NN on pooled features, side by side for the
pre-trained encoder, a randomly initialised one of the same shape, and the
modality's classical baseline on the raw input.

The gap between the first two columns is what pre-training bought; the third
says whether it beats what a field's practitioner would try first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnissl.errors import DataError, OmnisslError
from omnissl.recipe import ProbeConfig
from omnissl.train.checkpoint import write_text_atomic
from omnissl.train.data import TokenDataset, fixed_batches, make_loader, task_of


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
               out_path: Path | None = None) -> dict[str, Any]:
    """Probe both encoders and the baseline; write ``probe.json`` when ``out_path`` is given.

    The report is about the data set's ``labels``; a data set with several named ``targets``
    (a dict of per-sample arrays) gets one more report per target under ``"targets"``.
    """
    if tokens.labels is None:
        raise DataError("this data set has no labels, so it cannot be probed; use a labelled data set "
                        "(image folders with class sub-folders, or a set with a label column)")
    report = _probe_labels(pretrained, random_init, tokens, tokens.labels, train_idx, test_idx, config, device,
                           task_of(tokens.dataset, tokens.labels.astype(np.float64)))
    targets = getattr(tokens.dataset, "targets", None)
    if isinstance(targets, dict) and len(targets) > 1:
        report["targets"] = {}
        for name, values in targets.items():
            try:
                values = np.asarray(values, dtype=np.float64)
                declared = (getattr(tokens.dataset, "target_tasks", None) or {}).get(name)
                report["targets"][str(name)] = _probe_labels(pretrained, random_init, tokens, values, train_idx,
                                                             test_idx, config, device,
                                                             task_of(None, values, declared))
            except DataError as exc:  # one sparse target does not stop the others
                report["targets"][str(name)] = {"skipped": str(exc)}
    if out_path is not None:
        write_text_atomic(out_path, json.dumps(report, indent=2) + "\n", "probe report")
    return report


def _probe_labels(pretrained: torch.nn.Module, random_init: torch.nn.Module, tokens: TokenDataset,
                  values: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray, config: ProbeConfig,
                  device: torch.device, task: str) -> dict[str, Any]:
    labels = values.astype(np.float64)
    keep_train = train_idx[~np.isnan(labels[train_idx])][: config.max_samples]
    keep_test = test_idx[~np.isnan(labels[test_idx])][: config.max_samples]
    if len(keep_train) < 2 or len(keep_test) < 1:
        raise DataError(f"too few labelled samples to probe ({len(keep_train)} train, {len(keep_test)} test)")
    fits = {"classification": ("accuracy", "balanced_accuracy"), "regression": ("r2", "rmse")}[task]
    metric = config.metric if config.metric in fits else fits[0]  # "auto", or another target's kind
    y_train, y_test = labels[keep_train], labels[keep_test]
    report: dict[str, Any] = {}
    for name, encoder in (("pretrained", pretrained), ("random", random_init)):
        x_train = encode(encoder, tokens, keep_train, config.batch_size, device, config.pool)
        x_test = encode(encoder, tokens, keep_test, config.batch_size, device, config.pool)
        report[name] = score_features(x_train, y_train, x_test, y_test, task, config)
    base_train = baseline(tokens, keep_train)
    if base_train is not None:
        base_test = baseline(tokens, keep_test)
        report["baseline"] = score_features(base_train, y_train, base_test, y_test, task, config)
    report["metric"] = metric
    report["task"] = task
    report["num_train"], report["num_test"] = int(len(keep_train)), int(len(keep_test))
    return report


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
    for name, sub in report.get("targets", {}).items():
        lines.append(f"\ntarget {name}:")
        lines.append(format_table(sub))
    return "\n".join(lines)
