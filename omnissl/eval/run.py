"""Load a run folder's encoder; embed data with it; probe it against a random one; export it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from omnissl.build import build_dataset, build_encoder, build_modality
from omnissl.errors import OmnisslError
from omnissl.eval.probe import encode, run_probes
from omnissl.modality import Modality
from omnissl.plugins import Registry, get_registry
from omnissl.recipe import PoolName, Recipe, apply_overrides, load_yaml, validate
from omnissl.train.checkpoint import LAST, load_checkpoint, write_text_atomic
from omnissl.train.data import TokenDataset, held_out_split
from omnissl.train.loop import pick_device


def load_run(run_dir: Path, registry: Registry) -> tuple[Recipe, Modality, torch.nn.Module]:
    """The resolved recipe, the modality and the pre-trained encoder of a run folder."""
    recipe, modality, encoder, _ = _load_run(run_dir, registry)
    return recipe, modality, encoder


def _load_run(run_dir: Path, registry: Registry,
              overrides: Sequence[str] = ()) -> tuple[Recipe, Modality, torch.nn.Module, dict[str, Any]]:
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise OmnisslError(f"{run_dir} is not a run folder: it has no recipe.yaml (was it written by omnissl train?)")
    raw, text = load_yaml(recipe_path)
    recipe = validate(apply_overrides(raw, overrides), registry, str(recipe_path), text)
    state = load_checkpoint(run_dir / "checkpoints" / LAST)
    modality = build_modality(recipe, registry)
    torch.manual_seed(recipe.train.seed)
    encoder = build_encoder(recipe, registry, modality)
    weights = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    encoder.load_state_dict(weights)
    return recipe, modality, encoder, state


def run_features(run_dir: Path | str, dataset: Any = None, *, data: Sequence[str] = (), batch_size: int = 64,
                 pool: PoolName | None = None, device: str | None = None, registry: Registry | None = None,
                 metadata: bool = False) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pooled features of a run's pre-trained encoder for every sample of ``dataset``.

    The samples are tokenised as in training, without augmentation (``tokenize`` or
    ``tokenize_batch``, the core's collate, ``on_device``), so a downstream model sees what the
    probes saw.

    Args:
        run_dir: a folder written by ``omnissl train``.
        dataset: any data set of the run's modality (``len`` and ``[i]`` giving sample dicts);
            default: the data set of the run's ``recipe.yaml``, with ``data`` applied.
        data: overrides of the recipe's ``data`` section, as on the command line
            (``["data.root=/my/recordings"]``): other data, the run's own preprocessing.
        pool: ``mean``, ``max`` or ``mean_max``; default: the recipe's ``probe.pool``.
        device: default: the recipe's ``train.device``.
        metadata: also return what the data set knows of each sample, to join the features
            back to their source: ``labels``, ``groups``, each of ``targets``, ``source_files``,
            ``source_rows`` (whichever it has), as arrays of length ``len(dataset)``.
    Returns:
        (len(dataset), dim) float32, or (len(dataset), 2 * dim) for ``mean_max``; with
        ``metadata``, the pair (features, metadata).
    """
    bad = [text for text in data if not text.startswith("data.")]
    if bad:
        raise OmnisslError(f"run_features(data=...) overrides the recipe's data section only; got {bad}")
    registry = registry or get_registry()
    recipe, modality, encoder, _ = _load_run(Path(run_dir), registry, data)
    if dataset is None:
        dataset = build_dataset(recipe, registry)
    target = pick_device(device or recipe.train.device)
    tokens = TokenDataset(dataset, modality)
    features = encode(encoder.to(target), tokens, np.arange(len(dataset)), batch_size, target,
                      pool or recipe.probe.pool)
    return (features, sample_metadata(dataset)) if metadata else features


def sample_metadata(dataset: Any) -> dict[str, np.ndarray]:
    """The per-sample attributes of a data set (labels, groups, targets, source files and rows)."""
    out: dict[str, np.ndarray] = {}
    for name in ("labels", "groups", "source_files", "source_rows"):
        values = getattr(dataset, name, None)
        if values is not None and len(values) == len(dataset):
            out[name] = np.asarray(values)
    for name, values in (getattr(dataset, "targets", None) or {}).items():
        if len(values) == len(dataset):
            out[f"target:{name}"] = np.asarray(values)
    return out


@dataclass
class ProbeSetup:
    """What the probes of a run folder compare: its pre-trained encoder, a randomly initialised
    one (seeded by ``probe.seed``), the data and the run's own train / held-out split."""

    recipe: Recipe
    pretrained: torch.nn.Module
    random_init: torch.nn.Module
    tokens: TokenDataset
    train_idx: np.ndarray
    test_idx: np.ndarray
    checkpoint: dict[str, Any]  # the run's last checkpoint, for tools that need more than the encoder
    split: dict[str, Any]  # how the split was made (kind, sizes, groups on each side): HeldOutSplit.info


def probe_setup(run_dir: Path, registry: Registry) -> ProbeSetup:
    """Everything :func:`probe_run` (and plugins' diagnostics) need from ``run_dir``."""
    recipe, modality, pretrained, state = _load_run(run_dir, registry)
    dataset = build_dataset(recipe, registry)
    torch.manual_seed(recipe.probe.seed + 1)
    random_init = build_encoder(recipe, registry, modality)
    val_fraction = recipe.get("data", "val_fraction", 0.1) or 0.2
    split = held_out_split(dataset, val_fraction, recipe.train.seed, recipe.get("data", "split", "auto"))
    return ProbeSetup(recipe, pretrained, random_init, TokenDataset(dataset, modality), split.train, split.held_out,
                      state, split.info)


def probe_run(run_dir: Path, registry: Registry, unlabelled: Literal["error", "skip"] = "error") -> dict[str, Any]:
    """Run the probes of ``run_dir`` (written by ``omnissl train``) and write ``run_dir/probe.json``.

    ``unlabelled="skip"`` (after training): a data set without labels writes a ``probe.json`` that
    says why the probes were skipped, instead of raising.
    """
    setup = probe_setup(run_dir, registry)
    if setup.tokens.labels is None and unlabelled == "skip":
        report = {"skipped": "the data set has no labels, so there is nothing to probe; probe another, labelled "
                             "data set of this modality, or set probe.enabled=false"}
        write_text_atomic(run_dir / "probe.json", json.dumps(report, indent=2) + "\n", "probe report")
        return report
    device = pick_device(setup.recipe.train.device)
    report = run_probes(setup.pretrained.to(device), setup.random_init.to(device), setup.tokens, setup.train_idx,
                        setup.test_idx, setup.recipe.probe, device)
    report["split"] = setup.split  # which split the numbers are on, and how many groups each side has
    write_text_atomic(run_dir / "probe.json", json.dumps(report, indent=2) + "\n", "probe report")
    return report


def export_run(run_dir: Path, exporter: str, out: Path, registry: Registry) -> Path:
    """Write the run's encoder with a registered exporter (``omnissl export``)."""
    recipe, _, encoder = load_run(run_dir, registry)
    return registry.get("exporters", exporter)(encoder.eval(), recipe.raw, out)
