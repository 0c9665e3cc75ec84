"""Forgetting in sequential pre-training: probes at the end of each phase on every phase so far.

At the end of phase p (:func:`omnissl.research.phases.probe_plan`) the encoder is probed on
phase q's data for every q <= p: a linear and a k-NN probe fitted on q's labelled training
samples and scored on q's held-out ones, as ``probe.json``'s ``pretrained`` column is. One
JSON line per (step, phase probed) goes to ``phases.jsonl``. The forgetting of phase q is its
score right after phase q minus its score at the end of training (positive: forgotten).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

PHASES_LOG = "phases.jsonl"


def phase_probe_records(encoder: torch.nn.Module, tokens: Any, split: Any, entry: Any, config: Any,
                        device: torch.device, pool: str) -> list[dict[str, Any]]:
    """The probes of ``entry`` (a :class:`~omnissl.research.phases.PhaseProbe`): one record per
    phase probed. A phase without labelled training or held-out samples gets a record that says so.

    Args:
        tokens: the :class:`~omnissl.train.data.TokenDataset` of the :class:`PhasedData`.
        split: the :class:`~omnissl.research.phases.PhaseSplit`.
        config: the recipe's ``probe`` section (``ProbeConfig``).
    """
    from omnissl.errors import DataError
    from omnissl.eval.probe import _labelled, encode, score_columns
    from omnissl.train.data import task_of

    records = []
    labels = None if tokens.labels is None else tokens.labels.astype(np.float64)
    for q in entry.on:
        record: dict[str, Any] = {"step": entry.step, "after_phase": entry.after, "phase": q}
        if labels is None:
            records.append({**record, "skipped": "the phases' data sets have no labels"})
            continue
        train_idx = _labelled(split.train[q], [labels])[: config.max_samples]
        test_idx = _labelled(split.held_out[q], [labels])[: config.max_samples]
        try:
            task = task_of(tokens.dataset.datasets[q], labels[train_idx])
            features = {"pretrained": (encode(encoder, tokens, train_idx, config.batch_size, device, pool),
                                       encode(encoder, tokens, test_idx, config.batch_size, device, pool))}
            report = score_columns(features, labels[train_idx], labels[test_idx], task, config)
        except (DataError, ValueError) as exc:
            records.append({**record, "skipped": str(exc)})
            continue
        records.append({**record, **report["pretrained"], "metric": report["metric"], "num_train": report["num_train"],
                        "num_test": report["num_test"]})
    return records


def forgetting(records: Sequence[dict[str, Any]], probe: str = "linear") -> dict[int, dict[str, float | None]]:
    """Per phase q: its ``probe`` score right after phase q, at the end, and the difference.

    ``records``: ``phases.jsonl``'s lines; where a (step, phase) was probed twice (a resumed run
    repeats the probes after its checkpoint) the last line wins.
    """
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for r in records:
        latest[(int(r["step"]), int(r["phase"]))] = r
    final_step = max((step for step, _ in latest), default=None)
    out: dict[int, dict[str, float | None]] = {}
    for q in sorted({phase for _, phase in latest}):
        own = [r for (s, p), r in sorted(latest.items()) if p == q and r.get("after_phase") == q]
        after = own[-1].get(probe) if own else None
        end = latest.get((final_step, q), {}).get(probe)
        out[q] = {"after_own_phase": after, "final": end,
                  "forgetting": None if after is None or end is None else after - end}
    return out


def format_forgetting(table: dict[int, dict[str, float | None]], metric: str = "score") -> str:
    """The forgetting table as markdown."""
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"| phase | {metric} after its phase | {metric} at the end | forgetting |", "|---|---|---|---|"]
    lines += [f"| {q} | {cell(r['after_own_phase'])} | {cell(r['final'])} | {cell(r['forgetting'])} |"
              for q, r in table.items()]
    return "\n".join(lines)


def read_phase_records(run_dir: Path) -> list[dict[str, Any]]:
    from omnissl.train.runfolder import read_metrics

    path = Path(run_dir) / PHASES_LOG
    return read_metrics(path) if path.is_file() else []
