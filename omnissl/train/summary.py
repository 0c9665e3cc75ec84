"""What a run was built from, said once before training: the data summary (``RUN/data.json``).

A user who points omnissl at a folder should see, before step 1, what was found: how many
samples of what kind from how many files, what was skipped and why, the labels and groups,
and the train / held-out split. Everything here comes from the data set's own attributes
(the data-set contract in docs/plugin-guide.md), so a warm cache reads no raw file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from omnissl.train.checkpoint import write_text_atomic
from omnissl.train.data import labels_of, task_of


def _reason_kind(reason: str) -> str:
    """A short class of a skip reason, to count skips by reason ("truncated", "no foreground")."""
    head = re.split(r"[:;(]", str(reason), maxsplit=1)[0].strip()
    return head[:60] or "other"


def data_summary(dataset: Any, name: str, split: dict[str, Any]) -> dict[str, Any]:
    """A JSON-ready description of ``dataset`` and its split (``HeldOutSplit.info``)."""
    kind = getattr(dataset, "sample_kind", "sample")
    summary: dict[str, Any] = {"data_set": name, "samples": len(dataset), "sample_kind": kind}
    extra = dataset.summary() if callable(getattr(dataset, "summary", None)) else {}
    summary.update({str(k): v for k, v in dict(extra).items()})
    skipped = list(getattr(dataset, "skipped", None) or [])
    summary["skipped"] = {"count": len(skipped),
                          "by_reason": dict(Counter(_reason_kind(reason) for _, reason in skipped).most_common()),
                          "first": [[str(where), str(reason)] for where, reason in skipped[:5]]}
    summary["labels"] = _labels(dataset)
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, dict) and len(targets) > 1:
        summary["targets"] = {str(k): int(np.isfinite(np.asarray(v, dtype=np.float64)).sum())
                              for k, v in targets.items()}
    groups = getattr(dataset, "groups", None)
    summary["groups"] = None if groups is None else {"kind": getattr(dataset, "group_kind", "group"),
                                                     "count": int(len(np.unique(np.asarray(groups))))}
    summary["split"] = dict(split)
    return summary


def _labels(dataset: Any) -> dict[str, Any] | None:
    labels = labels_of(dataset)
    if labels is None:
        return None
    values = labels.astype(np.float64)
    known = values[np.isfinite(values)]
    out: dict[str, Any] = {"labelled": int(len(known)), "unlabelled": int(len(values) - len(known))}
    if len(known) and task_of(dataset, values) == "classification":  # the rule the probes follow
        classes = list(getattr(dataset, "classes", None) or [])
        counts = Counter(int(v) for v in known)
        out["task"] = "classification"
        out["classes"] = {(classes[c] if 0 <= c < len(classes) else str(c)): n for c, n in sorted(counts.items())}
    else:
        out["task"] = "regression"
        if len(known):
            out.update(mean=float(known.mean()), std=float(known.std()), min=float(known.min()),
                       max=float(known.max()))
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the few lines printed before training."""
    kind = summary["sample_kind"]
    files = summary.get("files")
    source = f" from {files:,} file{'s' if files != 1 else ''}" if isinstance(files, int) else ""
    lines = [f"data: {summary['data_set']}: {summary['samples']:,} {kind}{'s' if summary['samples'] != 1 else ''}"
             f"{source}"]
    core = {"data_set", "samples", "sample_kind", "files", "skipped", "labels", "groups", "split", "targets"}
    facts = [f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in summary.items() if k not in core]
    if facts:
        lines.append("  " + ", ".join(facts))
    skipped = summary["skipped"]
    if skipped["count"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in list(skipped["by_reason"].items())[:4])
        lines.append(f"  skipped {skipped['count']:,} ({reasons}); first: {skipped['first'][0][0]}")
    labels = summary["labels"]
    if labels is None:
        lines.append("  labels: none (probes will be skipped)")
    elif labels["task"] == "classification":
        classes = labels["classes"]
        shown = ", ".join(f"{c} {n:,}" for c, n in list(classes.items())[:8])
        more = f", and {len(classes) - 8} more" if len(classes) > 8 else ""
        unlabelled = f"; {labels['unlabelled']:,} unlabelled" if labels["unlabelled"] else ""
        lines.append(f"  labels: {len(classes)} classes ({shown}{more}){unlabelled}")
    else:
        lines.append(f"  labels: regression on {labels['labelled']:,} samples (mean {labels.get('mean', 0):.4g}, "
                     f"std {labels.get('std', 0):.4g})")
    if summary.get("targets"):
        lines.append("  targets: " + ", ".join(f"{k} ({n:,} labelled)" for k, n in summary["targets"].items()))
    groups, split = summary["groups"], summary["split"]
    if groups:
        lines.append(f"  groups: {groups['count']:,} {groups['kind']}s")
    kind = {"random": "random over samples", "grouped": "grouped", "given": "the data set's own",
            "scaffold": "by scaffold", "phases": "each phase on its own"}[split["kind"]]
    side = f"{split['train']:,} train / {split['held_out']:,} held-out ({kind}"
    if "train_groups" in split:
        side += f"; {split['train_groups']:,} / {split['held_out_groups']:,} {split['group_kind']}s, " \
                f"{split['groups_on_both_sides']:,} on both sides"
    if split.get("reason"):
        side += f"; not grouped: {split['reason']}"
    if "subset" in split:
        side += f"; data.subset {split['subset']}: {split['subset_samples']:,} of {split['train_before_subset']:,}"
    lines.append(f"  split: {side})")
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, json.dumps(summary, indent=2, default=str) + "\n", "data summary")
