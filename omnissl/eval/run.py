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
from omnissl.train.data import HeldOutSplit, TokenDataset, held_out_split
from omnissl.train.loop import pick_device, split_seed


def load_run(run_dir: Path, registry: Registry) -> tuple[Recipe, Modality, torch.nn.Module]:
    """The resolved recipe, the modality and the pre-trained encoder of a run folder."""
    recipe, modality, encoder, _ = _load_run(run_dir, registry)
    return recipe, modality, encoder


# What a probe may change of a run's recipe: the data (another labelled set of the modality, the
# label column, a test set) and the probes; anything else would change the encoder it loads.
PROBE_SECTIONS = ("data.", "probe.")


def check_probe_overrides(overrides: Sequence[str], what: str = "omnissl probe") -> None:
    bad = [text for text in overrides if not text.startswith(PROBE_SECTIONS)]
    if bad:
        raise OmnisslError(f"{what} takes data.* and probe.* overrides (another labelled data set, its label "
                           f"column, a test set, the pooling); command-line override {bad[0]!r} would change the "
                           f"pre-trained encoder or its objective")


def _load_run(run_dir: Path, registry: Registry, overrides: Sequence[str] = (),
              init: Literal["pretrained", "random"] = "pretrained") -> tuple[Recipe, Modality, torch.nn.Module,
                                                                             dict[str, Any]]:
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise OmnisslError(f"{run_dir} is not a run folder: it has no recipe.yaml (was it written by omnissl train?)")
    raw, text = load_yaml(recipe_path)
    recipe = validate(apply_overrides(raw, overrides), registry, str(recipe_path), text, overrides)
    state = load_checkpoint(run_dir / "checkpoints" / LAST)
    modality = build_modality(recipe, registry)
    if init == "random":  # the probes' random initialisation, of the same shape
        torch.manual_seed(recipe.probe.seed + 1)
        return recipe, modality, build_encoder(recipe, registry, modality), state
    torch.manual_seed(recipe.train.seed)
    encoder = build_encoder(recipe, registry, modality)
    weights = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    encoder.load_state_dict(weights)
    return recipe, modality, encoder, state


def run_features(run_dir: Path | str, dataset: Any = None, *, data: Sequence[str] = (), batch_size: int = 64,
                 pool: PoolName | None = None, device: str | None = None, registry: Registry | None = None,
                 metadata: bool = False, init: Literal["pretrained", "random"] = "pretrained"
                 ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
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
        pool: ``mean``, ``max`` or ``mean_max``; default: the recipe's ``probe.pool``, else the
            modality's readout.
        device: default: the recipe's ``train.device``.
        metadata: also return what the data set knows of each sample, to join the features
            back to their source: ``labels``, ``groups``, each of ``targets``, ``source_files``,
            ``source_rows`` (whichever it has), as arrays of length ``len(dataset)``.
        init: ``random`` gives the features of the randomly initialised encoder of the same
            shape that the probes compare against (seeded by ``probe.seed``), for your own
            pre-trained-vs-random comparisons.
    Returns:
        (len(dataset), dim) float32, or (len(dataset), 2 * dim) for ``mean_max``; with
        ``metadata``, the pair (features, metadata).
    """
    bad = [text for text in data if not text.startswith("data.")]
    if bad:
        raise OmnisslError(f"run_features(data=...) overrides the recipe's data section only; got {bad}")
    if init not in ("pretrained", "random"):
        raise OmnisslError(f"run_features(init=...) is 'pretrained' or 'random', got {init!r}")
    registry = registry or get_registry()
    recipe, modality, encoder, _ = _load_run(Path(run_dir), registry, data, init)
    if dataset is None:
        dataset = build_dataset(recipe, registry)
    target = pick_device(device or recipe.train.device)
    tokens = TokenDataset(dataset, modality)
    features = encode(encoder.to(target), tokens, np.arange(len(dataset)), batch_size, target,
                      pool or recipe.probe.pool or modality.readout)
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
    one (seeded by ``probe.seed``), the data and the run's own train / held-out split (or all of
    the data against a given test set)."""

    recipe: Recipe
    pretrained: torch.nn.Module
    random_init: torch.nn.Module
    tokens: TokenDataset
    train_idx: np.ndarray
    test_idx: np.ndarray
    checkpoint: dict[str, Any]  # the run's last checkpoint, for tools that need more than the encoder
    split: dict[str, Any]  # how the split was made (kind, sizes, groups on each side): HeldOutSplit.info
    pool: str = "mean"  # probe.pool, else the modality's readout
    test_tokens: TokenDataset | None = None  # the given test set, which test_idx indexes, when there is one


def probe_setup(run_dir: Path, registry: Registry, overrides: Sequence[str] = (),
                test: Sequence[str] = ()) -> ProbeSetup:
    """Everything :func:`probe_run` (and plugins' diagnostics) need from ``run_dir``.

    ``overrides`` (``data.*``, ``probe.*``) change the data or the probes; ``test`` (``data.*``
    overrides on top of those) names a test set: the probes then train on every sample of the
    (overridden) data set and are scored on every sample of the test set.
    """
    check_probe_overrides([*overrides, *test])
    recipe, modality, pretrained, state = _load_run(run_dir, registry, overrides)
    # a run with data.phases is scored on its phases' data and their own splits
    dataset, split = (build_dataset(recipe, registry), None) if test else evaluation_data(recipe, registry)
    torch.manual_seed(recipe.probe.seed + 1)
    random_init = build_encoder(recipe, registry, modality)
    pool = recipe.probe.pool or modality.readout
    tokens = TokenDataset(dataset, modality)
    if test:
        test_recipe = validate(apply_overrides(recipe.raw, test), registry, "--test", None, test)
        test_set = build_dataset(test_recipe, registry)
        align_classes(dataset, test_set, test)
        test_tokens = TokenDataset(test_set, modality)
        test_tokens.labels = tokens_labels(test_set, dataset)
        info = {"kind": "test set", "train": len(dataset), "held_out": len(test_set), "test": list(test)}
        groups, test_groups = getattr(dataset, "groups", None), getattr(test_set, "groups", None)
        if groups is not None and test_groups is not None:
            both = set(np.asarray(groups).astype(str).tolist()) & set(np.asarray(test_groups).astype(str).tolist())
            info.update(group_kind=getattr(dataset, "group_kind", "group"), groups_on_both_sides=len(both))
        return ProbeSetup(recipe, pretrained, random_init, tokens, np.arange(len(dataset)), np.arange(len(test_set)),
                          state, info, pool, test_tokens)
    return ProbeSetup(recipe, pretrained, random_init, tokens, split.train, split.held_out, state, split.info, pool)


def evaluation_fraction(recipe: Recipe) -> float:
    """The held-out fraction probes and fine-tuning are scored on: the run's ``data.val_fraction``,
    or 20 % for a run that held nothing out."""
    return recipe.get("data", "val_fraction", 0.1) or 0.2


def evaluation_split(recipe: Recipe, dataset: Any) -> HeldOutSplit:
    """The split probes and fine-tuning are scored on: the run's own (``data.split``, its seed),
    at :func:`evaluation_fraction`."""
    return held_out_split(dataset, evaluation_fraction(recipe), split_seed(recipe), recipe.get("data", "split", "auto"))


def evaluation_data(recipe: Recipe, registry: Registry, dataset: Any = None) -> tuple[Any, HeldOutSplit]:
    """The data probes and fine-tuning are scored on, and its split (:func:`evaluation_split`).

    A run with ``data.phases`` trained on its phases' data, each phase split on its own; its
    top-level data set holds only the phases' defaults, and a split of it would hold out samples
    the run trained on. So for such a run this is the phases' data and the union of their own
    splits (:func:`omnissl.research.phases.phased_evaluation`), and ``dataset`` is ignored.
    """
    from omnissl.research.phases import phased_evaluation

    phased = phased_evaluation(recipe, registry, evaluation_fraction(recipe))
    if phased is not None:
        return phased
    dataset = dataset if dataset is not None else build_dataset(recipe, registry)
    return dataset, evaluation_split(recipe, dataset)


def align_classes(train_set: Any, test_set: Any, test: Sequence[str]) -> None:
    """Refuse a test set whose class names the training set does not have."""
    train_classes, test_classes = getattr(train_set, "classes", None), getattr(test_set, "classes", None)
    if train_classes and test_classes:
        unknown = [c for c in test_classes if c not in list(train_classes)]
        if unknown:
            raise OmnisslError(f"the test set ({' '.join(test)}) has classes the probes' training data lacks: "
                               f"{unknown[:5]}")


def tokens_labels(test_set: Any, train_set: Any) -> np.ndarray | None:
    """The test set's labels as the training set's class indices (class names matched by name)."""
    labels = getattr(test_set, "labels", None)
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.float64)
    train_classes, test_classes = getattr(train_set, "classes", None), getattr(test_set, "classes", None)
    if train_classes and test_classes and list(train_classes) != list(test_classes):
        mapping = np.array([list(train_classes).index(c) for c in test_classes], dtype=np.float64)
        known = np.isfinite(labels)
        labels = labels.copy()
        labels[known] = mapping[labels[known].astype(int)]
    return labels


def probe_run(run_dir: Path, registry: Registry, unlabelled: Literal["error", "skip"] = "error", *,
              overrides: Sequence[str] = (), test: Sequence[str] = (), fractions: Sequence[float] = (),
              out: Path | None = None) -> dict[str, Any]:
    """Run the probes of ``run_dir`` (written by ``omnissl train``) and write ``out`` (default
    ``run_dir/probe.json``); with ``fractions``, also the label-efficiency curve and its PNG.

    ``unlabelled="skip"`` (after training): a data set without labels writes a ``probe.json`` that
    says why the probes were skipped, instead of raising.
    """
    out = out or run_dir / "probe.json"
    setup = probe_setup(run_dir, registry, overrides, test)
    if setup.tokens.labels is None and unlabelled == "skip":
        report = {"skipped": "the data set has no labels, so there is nothing to probe; probe another, labelled "
                             "data set of this modality, or set probe.enabled=false"}
        write_text_atomic(out, json.dumps(report, indent=2) + "\n", "probe report")
        return report
    device = pick_device(setup.recipe.train.device)
    report = run_probes(setup.pretrained.to(device), setup.random_init.to(device), setup.tokens, setup.train_idx,
                        setup.test_idx, setup.recipe.probe, device, pool=setup.pool, test_tokens=setup.test_tokens,
                        fractions=fractions)
    report["split"] = setup.split  # which split the numbers are on, and how many groups each side has
    if overrides:
        report["overrides"] = list(overrides)
    write_text_atomic(out, json.dumps(report, indent=2) + "\n", "probe report")
    if fractions:
        from omnissl.viz import plot_label_efficiency

        plot_label_efficiency(report["label_fractions"], report["metric"], out.with_name("label_efficiency.png"))
    return report


def export_run(run_dir: Path, exporter: str, out: Path, registry: Registry) -> Path:
    """Write the run's encoder with a registered exporter (``omnissl export``).

    It is called as ``exporter(encoder, recipe, out)``, plus ``run_dir=`` and ``registry=``
    keywords when it accepts them (for the plugins' per-run side files, and to build
    components). An exporter that declares the modalities it takes (a ``modalities``
    attribute: a tuple of names, or ``"any"``) is refused for a run of another modality,
    naming the exporters that do take it; this is checked before the run is loaded.
    """
    from omnissl.export import accepts_keyword, wrong_modality

    factory = registry.get("exporters", exporter)
    takes = getattr(factory, "modalities", None)
    if takes is not None and takes != "any":
        recipe_path = Path(run_dir) / "recipe.yaml"
        modality = (load_yaml(recipe_path)[0].get("modality") or {}).get("name") if recipe_path.is_file() else None
        if modality is not None and modality not in takes:
            raise wrong_modality(exporter, modality, takes, registry)
    recipe, _, encoder = load_run(run_dir, registry)
    extra = {key: value for key, value in (("run_dir", Path(run_dir)), ("registry", registry))
             if accepts_keyword(factory, key)}
    return factory(encoder.eval(), recipe.raw, Path(out), **extra)
