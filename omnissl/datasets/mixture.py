"""``data.name: mixture``: several data sets of one modality, sampled in proportion to weights.

A mixture of ``length`` samples gives source ``s`` ``round(length * w_s / sum(w))`` of them
(largest remainders, so they add up), spread over the index range by a seeded permutation. The
k-th slot of source ``s`` is its sample ``order_s[k % len(s)]``, ``order_s`` a seeded permutation
of the source: a source with more slots than samples repeats them (each as evenly as possible),
one with fewer gives a fixed, seeded subset. The mixture is map-style, so the loop's sampler
visits every slot once an epoch: each epoch sees the sources exactly in proportion.

Repeated samples share a group (``source/group`` where the source has groups, ``source/index``
otherwise), so a held-out split (``data.split: auto`` then holds out whole groups) never puts a
sample on both sides. Labels exist when every source has them; class names are merged by name.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Sequence

import numpy as np

from omnissl.datasets import Stack, read_samples, read_stacks
from omnissl.errors import DataError, RecipeError
from omnissl.recipe import Range

RESERVED = ("name", "weight", "tag")
MIXTURE_KEYS = ("val_fraction", "num_workers", "split", "split_seed")  # the core's, set on the mixture


class Mixture:
    """Several data sets of the recipe's modality, each sampled in proportion to its weight.

    Args:
        sources: one entry per source: ``name`` (a data set, ``shards`` for a shard folder),
            ``weight`` (> 0, relative), optionally ``tag`` (its name in logs and groups; default the
            data set's name, numbered when repeated), and that data set's own options
            (``{name: eeg_folder, weight: 2, root: /data/tuh}``).
        length: samples in one pass over the mixture (its ``len``); default the sum of the
            sources' lengths.
        seed: seeds the order of the sources' slots and which samples fill them.
    """

    def __init__(self, sources: list[dict], length: Annotated[int | None, Range(ge=1)] = None,
                 seed: Annotated[int, Range(ge=0)] = 0):
        if not sources:
            raise RecipeError("data.sources is empty: list the data sets to mix, each with a name and a weight")
        specs = [_spec(i, entry) for i, entry in enumerate(sources)]
        self.sources = _tags([tag for _, tag, _, _ in specs])
        self.datasets = [_build(i, name, options) for i, (name, _, _, options) in enumerate(specs)]
        for tag, dataset in zip(self.sources, self.datasets):
            if len(dataset) == 0:
                raise DataError(f"data.sources: source {tag!r} has no samples")
        weights = np.array([weight for _, _, weight, _ in specs], dtype=np.float64)
        sizes = np.array([len(d) for d in self.datasets])
        self.length = int(length or sizes.sum())
        counts = _apportion(self.length, weights / weights.sum())
        rng = np.random.default_rng([seed, 0])
        self.source_ids = rng.permutation(np.repeat(np.arange(len(specs)), counts)).astype(np.int32)  # [length]
        self.local = np.empty(self.length, dtype=np.int64)  # [length] index in the source
        for s, size in enumerate(sizes):
            slots = np.flatnonzero(self.source_ids == s)
            order = np.random.default_rng([seed, 1, s]).permutation(size)
            self.local[slots] = order[np.arange(len(slots)) % size]
        self.weights = (weights / weights.sum()).tolist()
        self.modality_name = _common_modality(self.sources, self.datasets)
        self._attributes()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.datasets[self.source_ids[index]][int(self.local[index])]

    def get_samples(self, indices: Sequence[int]) -> list[Any]:
        """``[self[i] for i in indices]``, each source asked once for its share of them (in one
        batched read where it has one: :func:`omnissl.datasets.read_samples`)."""
        index = np.asarray(indices, dtype=np.int64)
        source = self.source_ids[index]
        out: list[Any] = [None] * len(index)
        for s in np.unique(source).tolist():
            where = np.flatnonzero(source == s)
            for b, sample in zip(where.tolist(), read_samples(self.datasets[s], self.local[index[where]].tolist())):
                out[b] = sample
        return out

    def get_stacks(self, indices: Sequence[int]) -> list[Stack]:
        """The samples at ``indices`` as stacks (:func:`omnissl.datasets.read_stacks`), each
        source asked once for its share of them."""
        index = np.asarray(indices, dtype=np.int64)
        source = self.source_ids[index]
        stacks = []
        for s in np.unique(source).tolist():
            where = np.flatnonzero(source == s)
            stacks += [Stack(where[stack.rows], stack.sample)
                       for stack in read_stacks(self.datasets[s], self.local[index[where]].tolist())]
        return stacks

    def source_of(self, index: int) -> str:
        """The tag of the source that sample ``index`` comes from (the loop logs each source's share)."""
        return self.sources[self.source_ids[index]]

    def summary(self) -> dict[str, Any]:
        files = [getattr(d, "summary", lambda: {})().get("files") for d in self.datasets]
        counts = np.bincount(self.source_ids, minlength=len(self.sources))
        shares = ", ".join(f"{tag} {n:,} of {len(d):,}" for tag, n, d in zip(self.sources, counts, self.datasets))
        out: dict[str, Any] = {"sources": shares}
        if all(isinstance(f, int) for f in files):
            out["files"] = int(sum(files))
        return out

    def _attributes(self) -> None:
        """Labels, classes, groups, given split and scaffolds: where every source has them."""
        def each(name: str) -> list[Any] | None:
            values = [getattr(d, name, None) for d in self.datasets]
            return None if any(v is None for v in values) else values

        def gather(per_source: list[Any]) -> np.ndarray:  # per-source arrays -> [length], slot by slot
            return np.concatenate([np.asarray(v) for v in per_source])[self._flat]

        offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        self._flat = offsets[self.source_ids] + self.local  # [length] index into the sources laid end to end
        self.labels, self.classes = self._labels(each("labels"), gather)
        tasks = {getattr(d, "task", None) for d in self.datasets}
        self.task = tasks.pop() if len(tasks) == 1 else None
        groups = [np.asarray(g).astype(str) if g is not None else np.arange(len(d)).astype(str)
                  for d, g in ((d, getattr(d, "groups", None)) for d in self.datasets)]
        tagged = [np.char.add(f"{tag}/", g) for tag, g in zip(self.sources, groups)]
        self.groups = gather(tagged)
        kinds = {getattr(d, "group_kind", None) if getattr(d, "groups", None) is not None else "sample"
                 for d in self.datasets}
        self.group_kind = kinds.pop() if len(kinds) == 1 and None not in kinds else "group"
        split, scaffolds = each("split"), each("scaffolds")
        self.split = None if split is None else gather([np.asarray(v).astype(str) for v in split])
        self.scaffolds = None if scaffolds is None else gather([np.asarray(v).astype(str) for v in scaffolds])
        sample_kinds = {getattr(d, "sample_kind", "sample") for d in self.datasets}
        self.sample_kind = sample_kinds.pop() if len(sample_kinds) == 1 else "sample"
        self.skipped = [(f"{tag}: {where}", reason) for tag, d in zip(self.sources, self.datasets)
                        for where, reason in getattr(d, "skipped", None) or []]

    def _labels(self, labels: list[Any] | None, gather: Any) -> tuple[np.ndarray | None, list[str] | None]:
        if labels is None:
            return None, None
        classes = [getattr(d, "classes", None) for d in self.datasets]
        if all(c is None for c in classes):
            return gather([np.asarray(v, dtype=np.float64) for v in labels]), None
        if any(c is None for c in classes):
            named = [tag for tag, c in zip(self.sources, classes) if c is not None]
            warnings.warn(f"data.sources: {', '.join(named)} name their classes and the others do not, so the "
                          f"mixture has no labels (probes will be skipped)")
            return None, None
        merged: list[str] = []
        for names in classes:
            merged += [str(c) for c in names if str(c) not in merged]
        remapped = []
        for names, values in zip(classes, labels):
            table = np.array([merged.index(str(c)) for c in names], dtype=np.float64)
            values = np.asarray(values, dtype=np.float64)
            known = np.isfinite(values)
            out = np.full(len(values), np.nan)
            out[known] = table[values[known].astype(int)]
            remapped.append(out)
        return gather(remapped), merged


def _spec(i: int, entry: Any) -> tuple[str, str, float, dict[str, Any]]:
    """(data set name, tag, weight, options) of ``data.sources[i]``."""
    where = f"data.sources[{i}]"
    if not isinstance(entry, dict) or "name" not in entry or "weight" not in entry:
        raise RecipeError(f"{where} must be a mapping with a name and a weight ({{name: digits, weight: 1}}), got "
                          f"{entry!r}")
    weight = entry["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
        raise RecipeError(f"{where}.weight must be a positive number, got {weight!r}")
    name = entry["name"]
    if name == "mixture":
        raise RecipeError(f"{where}: a mixture cannot hold a mixture; list its sources here instead")
    options = {k: v for k, v in entry.items() if k not in RESERVED}
    core = [k for k in options if k in MIXTURE_KEYS]
    if core:
        raise RecipeError(f"{where}.{core[0]}: set data.{core[0]} on the mixture, not on one of its sources")
    if "tag" in entry and not (isinstance(entry["tag"], str) and entry["tag"]):
        raise RecipeError(f"{where}.tag must be a non-empty string, got {entry['tag']!r}")
    _check_options(where, name, options)
    return name, str(entry.get("tag") or name), float(weight), options


def _check_options(where: str, name: str, options: dict[str, Any]) -> None:
    """A source's options against its data set's signature, as a recipe's ``data`` section is."""
    import inspect

    from omnissl.plugins import get_registry
    from omnissl.recipe import _check_value, _closest, factory_parameters

    params = factory_parameters(get_registry().get("datasets", name), "datasets")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in options.items():
        if key not in params:
            if takes_any:
                continue
            raise RecipeError(f"{where}: {name!r} has no option {key!r}.{_closest(key, list(params))}")
        _check_value(value, params[key].annotation, f"{where}.{key}", "data.sources")


def _tags(names: list[str]) -> list[str]:
    """Each source's tag: its own, else its data set's name, numbered when several share it."""
    out = []
    for i, tag in enumerate(names):
        out.append(f"{tag}-{names[:i + 1].count(tag)}" if names.count(tag) > 1 else tag)
    if len(set(out)) < len(out):
        raise RecipeError(f"data.sources: two sources share a tag ({out}); give each its own tag")
    return out


def _build(i: int, name: str, options: dict[str, Any]) -> Any:
    from omnissl.plugins import get_registry

    factory = get_registry().get("datasets", name)
    try:
        return factory(**options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"data.sources[{i}]: cannot build data set {name!r} with {options}: {exc}") from exc


def _apportion(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts adding up to ``total``, proportional to ``shares`` (largest remainders)."""
    exact = total * shares
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[:total - counts.sum()]] += 1
    return counts


def _common_modality(tags: list[str], datasets: list[Any]) -> str | None:
    """The modality the sources declare (shards do); two different ones are refused."""
    declared = {tag: getattr(d, "modality_name", None) for tag, d in zip(tags, datasets)}
    kinds = {m for m in declared.values() if m is not None}
    if len(kinds) > 1:
        raise DataError(f"data.sources hold samples of different modalities ({declared}); a mixture is of one "
                        f"modality")
    return kinds.pop() if kinds else None
