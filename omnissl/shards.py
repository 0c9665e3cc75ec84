"""``omnissl shard RECIPE --out DIR``: write what a recipe's data set yields as LitData shards.

The samples are the plugin's own (its cached, preprocessed ``dataset[i]``, before tokenisation:
tokenising and augmenting still happen in the loader, seeded as always), encoded by
:mod:`omnissl.datasets.codec` and written with LitData's chunk writer (``litdata.streaming.Cache``,
what ``litdata.optimize`` writes with; used directly so the samples keep their order and their
serializers are the two safe ones). Beside the chunks go what the core and the probes read of a
data set (:data:`omnissl.datasets.shards.PER_SAMPLE`, targets, class names, group kind, summary)
and the side files it gives a run (``run_files``: ``audio_stats.json``, ``eeg_channels.json``), so
``data.name: shards`` gives the same held-out split, the same probes and the same run folder. The
folder appears whole or not at all (written beside, then renamed). Copy it to an object store with
the store's own tool (``aws s3 sync DIR s3://bucket/prefix``) to stream it from there.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from omnissl.build import build_dataset
from omnissl.datasets import codec
from omnissl.datasets.shards import ARRAYS, FORMAT, INDEX, META, PER_SAMPLE, VERSION, _litdata
from omnissl.errors import DataError, OmnisslError
from omnissl.plugins import Registry
from omnissl.recipe import Recipe, factory_parameters

DEFAULT_CHUNK_BYTES = "64MB"  # LitData's default for optimize()


def write_shards(recipe: Recipe, registry: Registry, out: Path, chunk_bytes: str = DEFAULT_CHUNK_BYTES,
                 overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write the samples of ``recipe``'s data set into the shard folder ``out``; returns what
    ``omnissl.json`` records (modality, data set, sample count, chunks, bytes).

    Raises:
        OmnisslError: ``out`` holds something else, the data set is already shards or a mixture, or a
            sample holds what shards cannot (:func:`omnissl.datasets.codec.encode`).
    """
    litdata = _litdata()
    name, options = recipe.component("data")
    if name in ("shards", "mixture"):
        raise OmnisslError(f"{recipe.source}: data.name is {name!r}; omnissl shard writes a plugin's data set "
                           f"(shards of shards would be the same samples again)")
    if "://" in str(out):
        raise OmnisslError(f"--out {out}: omnissl shard writes a local folder; copy it to the store afterwards "
                           f"(aws s3 sync {out.name} {out}) and train with data.path={out}")
    _check_out(out, overwrite)
    dataset = build_dataset(recipe, registry)
    meta = _describe(recipe, registry, name, options, dataset)
    arrays = _per_sample(dataset, name)
    from omnissl.cache import atomic_folder

    with atomic_folder(out, "shard folder") as tmp:
        meta["arrays_per_sample"] = _write_chunks(litdata, dataset, name, tmp, chunk_bytes, progress)
        index = json.loads((tmp / INDEX).read_text())
        meta["chunks"] = len(index["chunks"])
        meta["bytes"] = sum(int(chunk.get("chunk_bytes", 0)) for chunk in index["chunks"])
        with open(tmp / ARRAYS, "wb") as handle:
            np.savez(handle, **arrays)
        (tmp / META).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return meta


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.is_dir():
            out.rmdir()  # the folder appears by a rename
        return
    if not overwrite:
        raise OmnisslError(f"--out {out} already exists; choose another folder, or add --overwrite to replace the "
                           f"shards in it")
    if not (out / META).is_file():
        raise OmnisslError(f"--out {out} holds files that are not omnissl shards; --overwrite replaces shard folders "
                           f"only: choose another folder")
    shutil.rmtree(out)


def _describe(recipe: Recipe, registry: Registry, name: str, options: dict[str, Any], dataset: Any
              ) -> dict[str, Any]:
    """What ``omnissl.json`` records: the writer, the data set's full options (defaults filled in, so
    a recipe that trains from the shards can be checked against them) and its scalar attributes."""
    params = factory_parameters(registry.get("datasets", name), "datasets")
    full = {key: p.default for key, p in params.items() if p.default is not p.empty and p.kind is not p.VAR_KEYWORD}
    full.update(options)
    classes = getattr(dataset, "classes", None)
    summary = dataset.summary() if callable(getattr(dataset, "summary", None)) else {}
    run_files = dataset.run_files() if callable(getattr(dataset, "run_files", None)) else {}
    return {"format": FORMAT, "version": VERSION, "modality": recipe.raw["modality"]["name"], "data_set": name,
            "recipe": recipe.source, "options": _jsonable(full), "samples": len(dataset),
            "classes": None if classes is None else [str(c) for c in classes],
            "task": getattr(dataset, "task", None), "target_tasks": _jsonable(getattr(dataset, "target_tasks", None)),
            "group_kind": getattr(dataset, "group_kind", None), "sample_kind": getattr(dataset, "sample_kind", None),
            "summary": _jsonable(dict(summary)),
            "skipped": [[str(where), str(reason)] for where, reason in getattr(dataset, "skipped", None) or []],
            "run_files": _jsonable(dict(run_files)),
            "litdata": getattr(_litdata(), "__version__", "?")}


def _per_sample(dataset: Any, name: str) -> dict[str, np.ndarray]:
    """The data set's per-sample arrays as ``omnissl_arrays.npz`` holds them (no object arrays)."""
    from omnissl.cache import require_finite

    n = len(dataset)
    out: dict[str, np.ndarray] = {"sample_ids": np.arange(n, dtype=np.int64)}
    for attr in PER_SAMPLE:
        values = getattr(dataset, attr, None)
        if values is not None:
            out[attr] = _column(values, n, f"{name}.{attr}")
    for target, values in (getattr(dataset, "targets", None) or {}).items():
        out[f"target:{target}"] = _column(values, n, f"{name}.targets[{target!r}]")
    for key in ("labels", *(k for k in out if k.startswith("target:"))):
        if key in out and out[key].dtype.kind in "fc":
            require_finite(out[key], f"{name} {key}", missing_ok=True)  # NaN: unlabelled
    return out


def _column(values: Any, n: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if len(array) != n:
        raise DataError(f"{what} has {len(array)} entries for {n} samples")
    if array.dtype.kind in "OUS":
        array = array.astype(str)
    return array


def _write_chunks(litdata: Any, dataset: Any, name: str, folder: Path, chunk_bytes: str, progress: bool) -> int:
    """Every sample, in order, into LitData chunks under ``folder``; returns the arrays per sample."""
    from tqdm import tqdm

    writer = litdata.streaming.Cache(str(folder), chunk_bytes=chunk_bytes, serializers=codec.serializers())
    width = None
    for i in tqdm(range(len(dataset)), desc=f"shard {name}", unit="sample", file=sys.stderr, mininterval=1.0,
                  disable=not progress):
        layout, arrays = codec.encode(dataset[i], f"{name} sample {i}")
        if width is None:
            width = len(arrays)  # LitData fixes the number of leaves from the first sample
        if len(arrays) > width:
            raise DataError(f"{name} sample {i} holds {len(arrays)} arrays, sample 0 holds {width}; shards need "
                            f"no more arrays in any sample than in the first")
        arrays += [np.zeros(0, np.uint8)] * (width - len(arrays))  # unused: the layout names the real ones
        writer[i] = (layout, *arrays)
    writer.done()
    writer.merge()
    return int(width or 0)


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, tuples as lists."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def shard_command(recipe_name: str, overrides: list[str], out: Path, chunk_bytes: str, overwrite: bool) -> str:
    """``omnissl shard``: write the shards, and say how to train from them."""
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe

    registry = get_registry()
    recipe = load_recipe(recipe_name, overrides, registry)
    meta = write_shards(recipe, registry, out, chunk_bytes, overwrite)
    kind = meta["sample_kind"] or "sample"
    again = " ".join([recipe_name, *overrides])
    return (f"wrote {meta['samples']:,} {kind}s of {meta['data_set']} ({meta['modality']}) to {out}: "
            f"{meta['chunks']} chunk(s), {meta['bytes'] / 1e6:,.1f} MB\n"
            f"train from them: omnissl train {again} data.name=shards data.path={out} --out runs/NAME")
