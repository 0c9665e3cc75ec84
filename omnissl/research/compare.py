"""Is the validation loss an indicator of downstream quality? ``omnissl compare RUN [RUN ...]``.

The masked-image-modelling scaling study (Xie et al., "On Data Scaling in Masked Image
Modeling", CVPR 2023) found the pre-training validation loss a good indicator of fine-tuning
quality across model and data sizes. This gathers, for several runs, the validation loss and
the linear- or k-NN-probe score at every kept checkpoint (``probes.jsonl``, written by
``omnissl probe RUN --all-checkpoints``) and at the end (``metrics.jsonl`` + ``probe.json``),
and reports Spearman's rank correlation between them, over all runs, within each run (over
training time), and over the runs' final encoders (one point per run: the scaling study's
question, across model sizes and training lengths). A reliable indicator gives rho near -1: a
lower loss ranks with a higher score (accuracy and R^2, the probes' metrics, grow with quality).

Writes into ``--out``: ``compare.md`` and ``compare.csv`` (one row per point), ``compare.json``
(the rows and the correlations) and ``val_loss_vs_probe.png`` (one point per checkpoint, one
colour per run).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from omnissl.cache import write_bytes, write_json, write_text
from omnissl.errors import OmnisslError
from omnissl.eval.probe import PROBES_LOG
from omnissl.train.runfolder import METRICS, read_metrics

PROBES = ("linear", "knn")


def scored_metric(metric: str | None) -> str | None:
    """The metric of the ``linear``/``knn`` scores a probe record holds: its ``metric``, except that
    ``probe.metric=rmse`` keeps R^2 there (the RMSE is beside it, under ``*_rmse``), so every score
    compared grows with quality."""
    return "r2" if metric == "rmse" else metric


@dataclass
class Point:
    """One encoder of one run: a kept checkpoint, or the run's final encoder."""

    run: str
    step: int
    kind: str  # "checkpoint" or "final"
    val_loss: float | None
    score: float | None  # the chosen probe's score
    scores: dict[str, float]  # every probe's score


@dataclass
class Correlation:
    """Spearman's rho between validation loss and probe score over some points; ``note`` says
    why it is missing (too few points, a constant input)."""

    rho: float | None
    p_value: float | None
    points: int
    note: str | None = None


def spearman(losses: Sequence[float], scores: Sequence[float]) -> Correlation:
    """Spearman's rho (scipy.stats.spearmanr) of paired values; None with a note where it is not
    defined: fewer than three points, or every loss (or every score) equal."""
    n = len(losses)
    if n < 3:
        return Correlation(None, None, n, f"too few points ({n}; at least 3 are needed)")
    if len(set(losses)) == 1:
        return Correlation(None, None, n, "the validation loss is the same at every point")
    if len(set(scores)) == 1:
        return Correlation(None, None, n, "the probe score is the same at every point")
    from scipy.stats import spearmanr

    result = spearmanr(losses, scores)
    rho, p = float(result.statistic), float(result.pvalue)
    return Correlation(rho, p if math.isfinite(p) else None, n)


def run_points(run_dir: Path, probe: str = "linear", name: str | None = None) -> tuple[list[Point], str | None]:
    """The points of one run: each kept checkpoint probed (``probes.jsonl``; the last line of a
    step wins when it was probed twice), then the final encoder (``probe.json``) unless a kept
    checkpoint has its step. Returns (points, the probes' metric or None when nothing was probed)."""
    if probe not in PROBES:
        raise OmnisslError(f"--probe must be one of {', '.join(PROBES)}, got {probe!r}")
    name = name or run_dir.name
    if not (run_dir / "recipe.yaml").is_file():
        raise OmnisslError(f"{run_dir} is not a run folder: it has no recipe.yaml (was it written by omnissl train?)")
    metrics = read_metrics(run_dir / METRICS) if (run_dir / METRICS).is_file() else []
    val = {int(r["step"]): float(r["val_loss"]) for r in metrics if "val_loss" in r}
    by_step: dict[int, dict[str, Any]] = {}
    log = run_dir / PROBES_LOG
    for record in read_metrics(log) if log.is_file() else []:
        by_step[int(record["step"])] = record
    metrics_seen: dict[str, str] = {}  # metric -> where it was first seen
    points = []
    for step in sorted(by_step):
        record = by_step[step]
        if record.get("metric"):
            metrics_seen.setdefault(scored_metric(record["metric"]), f"{log.name} step {step}")
        loss = record.get("val_loss")
        loss = val.get(step) if loss is None else float(loss)
        scores = {p: float(record[p]) for p in PROBES if p in record}
        points.append(Point(name, step, "checkpoint", loss, scores.get(probe), scores))
    final = run_dir / "probe.json"
    report = json.loads(final.read_text()) if final.is_file() else {}
    if "pretrained" in report:
        step = max(val) if val else max((int(r["step"]) for r in metrics if "step" in r), default=0)
        if step not in by_step:
            if report.get("metric"):
                metrics_seen.setdefault(scored_metric(report["metric"]), "probe.json")
            scores = {p: float(report["pretrained"][p]) for p in PROBES if p in report["pretrained"]}
            points.append(Point(name, step, "final", val.get(step), scores.get(probe), scores))
    if len(metrics_seen) > 1:  # one run's points scored in different metrics cannot be ranked together
        seen = ", ".join(f"{m} ({where})" for m, where in metrics_seen.items())
        raise OmnisslError(f"{run_dir}'s probes use different metrics: {seen}; probe every checkpoint again with "
                           f"one probe.metric (`omnissl probe {run_dir} --all-checkpoints`: the last line of a "
                           f"step wins)")
    return points, next(iter(metrics_seen), None)


@dataclass
class Comparison:
    points: list[Point]
    metric: str
    probe: str
    overall: Correlation
    per_run: dict[str, Correlation]
    finals: Correlation  # over each run's last point (its final encoder)


def compare_runs(run_dirs: Sequence[Path], probe: str = "linear") -> Comparison:
    """Gather every run's points and correlate validation loss with the ``probe`` score."""
    names = _names(run_dirs)
    points: list[Point] = []
    metrics: dict[str, str] = {}
    for run_dir, name in zip(run_dirs, names):
        found, metric = run_points(run_dir, probe, name)
        if not found:
            raise OmnisslError(f"{run_dir} has no probe results: run `omnissl probe {run_dir} --all-checkpoints` "
                               f"(with train.keep_checkpoints set) or `omnissl probe {run_dir}` first")
        points += found
        if metric:
            metrics[name] = metric
    if len(set(metrics.values())) > 1:
        raise OmnisslError(f"the runs' probes use different metrics ({metrics}); compare runs probed with the "
                           f"same probe.metric")
    usable = [p for p in points if p.val_loss is not None and p.score is not None]
    overall = spearman([p.val_loss for p in usable], [p.score for p in usable])
    per_run = {name: spearman([p.val_loss for p in usable if p.run == name],
                              [p.score for p in usable if p.run == name]) for name in names}
    # each run's last point: its final encoder (left out where it has no loss or score)
    lasts = [max((p for p in points if p.run == name), key=lambda p: p.step) for name in names]
    lasts = [p for p in lasts if p.val_loss is not None and p.score is not None]
    finals = spearman([p.val_loss for p in lasts], [p.score for p in lasts])
    return Comparison(points, next(iter(metrics.values()), "score"), probe, overall, per_run, finals)


def _names(run_dirs: Sequence[Path]) -> list[str]:
    """Short names for the runs: folder names, or paths where two folders share a name."""
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        raise OmnisslError(f"a run is named twice: {', '.join(map(str, run_dirs))}")
    return names


def _cell(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rho(c: Correlation) -> str:
    return f"{c.rho:+.3f}" if c.rho is not None else f"n/a ({c.note})"


def markdown(comparison: Comparison) -> str:
    """The comparison as markdown: the correlations, then every point."""
    c = comparison
    lines = [f"Spearman's rho between validation loss and {c.probe}-probe {c.metric} "
             f"(rho near -1: a lower loss ranks with a better probe).", "",
             "| runs | points | rho | p-value |", "|---|---|---|---|",
             f"| all | {c.overall.points} | {_rho(c.overall)} | {_cell(c.overall.p_value, 3)} |",
             f"| final encoders (each run's last point) | {c.finals.points} | {_rho(c.finals)} | "
             f"{_cell(c.finals.p_value, 3)} |"]
    lines += [f"| {name} | {r.points} | {_rho(r)} | {_cell(r.p_value, 3)} |" for name, r in c.per_run.items()]
    lines += ["", f"| run | step | encoder | val loss | linear ({c.metric}) | k-NN ({c.metric}) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {p.run} | {p.step} | {p.kind} | {_cell(p.val_loss)} | {_cell(p.scores.get('linear'))} | "
              f"{_cell(p.scores.get('knn'))} |" for p in c.points]
    missing = sum(p.val_loss is None for p in c.points)
    if missing:
        lines += ["", f"{missing} point(s) have no validation loss logged at their step (keep checkpoints at "
                      f"multiples of train.val_every); they are left out of rho."]
    return "\n".join(lines) + "\n"


def csv_text(comparison: Comparison) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "step", "encoder", "val_loss", "linear", "knn", "metric"])
    for p in comparison.points:
        writer.writerow([p.run, p.step, p.kind, "" if p.val_loss is None else p.val_loss,
                         p.scores.get("linear", ""), p.scores.get("knn", ""), comparison.metric])
    return out.getvalue()


def plot(comparison: Comparison) -> bytes | None:
    """Validation loss against probe score, one colour per run, its points joined in step order,
    its last point (the final encoder) a star; the legend beside the axes. PNG bytes (None
    without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed, so no PNG is written; pip install 'omnissl[eval]'")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    colours = plt.get_cmap("tab10" if len(comparison.per_run) <= 10 else "tab20")
    for i, name in enumerate(comparison.per_run):
        mine = [p for p in comparison.points if p.run == name and p.val_loss is not None and p.score is not None]
        if not mine:
            continue
        colour = colours(i % colours.N)
        ax.plot([p.val_loss for p in mine], [p.score for p in mine], "o-", color=colour, alpha=0.75,
                markersize=4, label=name)
        ax.plot([mine[-1].val_loss], [mine[-1].score], "*", color=colour, markersize=13,
                markeredgecolor="black", markeredgewidth=0.5)
    title = [f"Spearman rho, {what} = {c.rho:+.3f}" if c.rho is not None else f"rho, {what}: {c.note}"
             for what, c in (("all points", comparison.overall), ("final encoders (stars)", comparison.finals))]
    ax.set_title("\n".join(title), fontsize=9)
    ax.set_xlabel("validation loss")
    ax.set_ylabel(f"{comparison.probe} probe {comparison.metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="run (points in step order)",
              title_fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_comparison(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write compare.md, compare.csv, compare.json and val_loss_vs_probe.png into ``out_dir``."""
    written = [write_text(out_dir / "compare.md", markdown(comparison), "comparison table"),
               write_text(out_dir / "compare.csv", csv_text(comparison), "comparison table")]
    data = {"metric": comparison.metric, "probe": comparison.probe, "overall": asdict(comparison.overall),
            "finals": asdict(comparison.finals), "per_run": {k: asdict(v) for k, v in comparison.per_run.items()},
            "points": [asdict(p) for p in comparison.points]}
    written.append(write_json(out_dir / "compare.json", data, "comparison", indent=2))
    png = plot(comparison)
    if png is not None:
        written.append(write_bytes(out_dir / "val_loss_vs_probe.png", png, "comparison plot"))
    return written
