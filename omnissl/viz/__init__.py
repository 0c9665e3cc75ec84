"""Plots every run writes: the loss curve and the modality's reconstructions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from omnissl.objectives.base import draw_mask
from omnissl.tokens import collate_tokens
from omnissl.train.data import step_generator
from omnissl.train.runfolder import read_metrics


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed, so no PNGs are written; pip install 'omnissl[eval]'")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(metrics_path: Path, png: Path) -> Path | None:
    """Training loss and validation loss against step, from ``metrics.jsonl``."""
    plt = _pyplot()
    if plt is None or not metrics_path.exists():
        return None
    records = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if train:
        ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


@torch.no_grad()
def plot_reconstructions(objective: Any, modality: Any, masker: Any, tokens: Any, indices: Any, recipe: Any,
                         device: torch.device, png: Path) -> Path | None:
    """Ask the modality to draw a few held-out samples with their reconstructions (objectives
    that reconstruct only: latent objectives predict features, which no modality can draw)."""
    if _pyplot() is None or not hasattr(objective, "reconstruct"):
        return None
    chosen = [int(i) for i in indices[: recipe.viz.num_samples]]
    batch = collate_tokens([tokens[(i, None)] for i in chosen])
    batch = modality.on_device(batch.to(device))
    mask = draw_mask(objective, masker, batch, step_generator(recipe.train.seed, 2, device=device))
    objective.eval()
    predictions = objective.reconstruct(batch, mask)
    objective.train()
    return modality.visualize(batch.to("cpu"), mask.hidden.cpu(), {k: v.cpu() for k, v in predictions.items()}, png)


STYLES = {"linear": "-", "knn": "--", "finetune": "-"}
COLOURS = {"pretrained": "C0", "random": "C1", "scratch": "C1", "baseline": "C2"}


def plot_label_efficiency(curve: dict[str, dict[str, Any]], metric: str, png: Path,
                          title: str = "label efficiency") -> Path | None:
    """The metric against the fraction of labelled training samples (log axis): one line per
    encoder (colour) and probe or fine-tuning (line style)."""
    plt = _pyplot()
    if plt is None or not curve:
        return None
    fractions = [float(f) for f in curve]
    first = next(iter(curve.values()))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for column, probes in first.items():
        if not isinstance(probes, dict):
            continue
        for probe in probes:
            if probe.endswith("rmse"):
                continue
            ys = [row[column][probe] for row in curve.values()]
            ax.plot(fractions, ys, STYLES.get(probe, ":"), marker="o", color=COLOURS.get(column),
                    label=f"{column} {probe}")
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.set_xlabel("fraction of labelled training samples")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png
