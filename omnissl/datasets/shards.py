"""``data.name: shards``: train from the samples ``omnissl shard`` wrote, read through LitData.

The shard folder holds LitData's chunks and ``index.json`` (what ``litdata.StreamingDataset``
reads, locally or from an object store) and two files of omnissl's: ``omnissl.json`` (which
modality and data set wrote the samples, with its options, class names, group kind, summary) and
``omnissl_arrays.npz`` (the per-sample labels, groups, given split, scaffolds, targets and the
index each sample had in its data set; loaded without pickle). So the data set is map-style like
any plugin's: a length, random access and the attributes the held-out split and the probes read,
and the loop's seeded sampler gives the same order, split across ranks and workers, resumable
mid-epoch. A local folder's chunks are read in place, a batch at a time
(:mod:`omnissl.datasets.chunks`, :meth:`ShardDataset.get_samples`); an object store's through
LitData's ``StreamingDataset``, which fetches them into a cache. Samples are decoded by
:mod:`omnissl.datasets.codec`; the modality tokenises them in the loader as it would the plugin's
own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omnissl.datasets import Stack, codec, stack_samples
from omnissl.datasets.chunks import ChunkReader
from omnissl.errors import DataError

META, ARRAYS, INDEX = "omnissl.json", "omnissl_arrays.npz", "index.json"
FORMAT, VERSION = "omnissl-shards", 1
# Object stores LitData reads (its downloaders); "local:" streams a local folder through its cache.
REMOTE = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")
PER_SAMPLE = ("labels", "groups", "split", "scaffolds", "source_files", "source_rows")


def _litdata() -> Any:
    try:
        import litdata
    except ImportError:
        raise DataError("data.name: shards reads with LitData, which is not installed: "
                        "pip install 'omnissl[shards]'") from None
    return litdata


class ShardDataset:
    """Samples written by ``omnissl shard``, read through LitData from a folder or an object store.

    The modality still comes from the recipe; shards written for another modality are refused.
    Train a recipe from its own shards by adding ``data.name=shards data.path=DIR``: the recipe's
    other ``data`` options are then checked against those the shards were written with.

    Args:
        path: the shard folder ``omnissl shard --out`` wrote, or its copy in an object store
            (``s3://bucket/prefix``, ``gs://``, ``azure://``, ``r2://``, ``hf://``; credentials as
            the store's own tools read them). The recipe's other ``data`` options, if any, are the
            writing data set's, and must equal what the shards were written with.
        cache_dir: where chunks of remote shards are kept once read (default:
            ``$OMNISSL_CACHE/shards``); local shards are read in place.
        source_options: the options of the data set that wrote the shards; each must equal the
            value the shards were written with.
    """

    def __init__(self, path: str, cache_dir: str | None = None, **source_options: Any):
        self.path = str(path)
        self.remote = self.path.startswith(REMOTE)
        if "://" in self.path and not self.remote:
            raise DataError(f"data.path {self.path}: LitData cannot read {self.path.split('://')[0]}:// addresses; "
                            f"it reads local folders and {', '.join(REMOTE[:-1])}")
        self.cache_dir = cache_dir
        folder = self._fetch_metadata() if self.remote else self._local_folder()
        meta = self._read_meta(folder)
        index = self._read_json(folder / INDEX, "LitData index")
        codec.check_index(index.get("config") or {}, f"data.path {self.path}")
        self.num_samples = int(meta["samples"])
        stored = sum(int(chunk["chunk_size"]) for chunk in index.get("chunks") or [])
        if stored != self.num_samples:
            raise DataError(f"data.path {self.path}: its chunks hold {stored} samples, its {META} says "
                            f"{self.num_samples}; the folder is incomplete or mixed: write it again with omnissl shard")
        self.modality_name: str = meta["modality"]
        self.data_set: str = meta["data_set"]
        self.origin = f"shards {self.path}, written from data set {self.data_set!r} by {meta.get('recipe', '?')}"
        self._check_options(meta.get("options") or {}, source_options)
        self.classes = meta.get("classes")
        self.task = meta.get("task")
        self.target_tasks = meta.get("target_tasks")
        self.group_kind = meta.get("group_kind") or "group"
        self.sample_kind = meta.get("sample_kind") or "sample"
        self.skipped = [tuple(entry) for entry in meta.get("skipped") or []]
        self._summary = dict(meta.get("summary") or {})
        arrays = self._read_arrays(folder / ARRAYS)
        for name in PER_SAMPLE:
            setattr(self, name, arrays.get(name))
        names = [key[len("target:"):] for key in arrays if key.startswith("target:")]
        self.targets = {name: arrays[f"target:{name}"] for name in names} if names else None
        self.sample_ids = arrays["sample_ids"]
        self._run_files = dict(meta.get("run_files") or {})
        self._reader: ChunkReader | None = None
        if not self.remote:
            _litdata()  # its dtype codes
            self._reader = ChunkReader(folder, index["chunks"], len(index["config"]["data_format"]),
                                       f"data.path {self.path}")
        self._stream: Any = None
        self._pid: int | None = None

    # ----- opening -----
    def _local_folder(self) -> Path:
        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.path {self.path}: no such folder; write shards there with "
                            f"`omnissl shard RECIPE --out {self.path}`")
        if not (folder / INDEX).is_file():
            raise DataError(f"data.path {self.path} holds no LitData {INDEX}: it is not a shard folder (write one "
                            f"with `omnissl shard RECIPE --out DIR`)")
        return folder

    def _fetch_metadata(self) -> Path:
        """The three small files of remote shards, copied into the cache (each run reads them again:
        shards rewritten in place are never served stale)."""
        from omnissl.cache import cache_folder, entry_key

        _litdata()
        from litdata.streaming.downloader import get_downloader
        folder = cache_folder("shards", self.cache_dir) / entry_key(self.path) / "meta"
        folder.mkdir(parents=True, exist_ok=True)
        base = self.path.rstrip("/")
        for name in (INDEX, META, ARRAYS):
            target = folder / name
            target.unlink(missing_ok=True)
            try:
                get_downloader(base, str(folder), []).download_file(f"{base}/{name}", str(target))
            except Exception as exc:  # each store's client raises its own errors: name the file
                raise DataError(f"data.path {self.path}: cannot read {base}/{name} ({exc!r}); check the address "
                                f"and the store's credentials") from exc
            if not target.is_file():
                raise DataError(f"data.path {self.path}: {base}/{name} was not found; is it a folder written by "
                                f"omnissl shard, copied whole?")
        return folder

    def _read_json(self, file: Path, what: str) -> dict[str, Any]:
        if not file.is_file():
            raise DataError(f"data.path {self.path} has no {file.name}: LitData chunks not written by omnissl shard "
                            f"(which records the modality, labels and groups); write them with omnissl shard")
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"data.path {self.path}: its {what} {file.name} cannot be read ({exc})") from exc

    def _read_meta(self, folder: Path) -> dict[str, Any]:
        meta = self._read_json(folder / META, "description")
        if meta.get("format") != FORMAT or not isinstance(meta.get("version"), int):
            raise DataError(f"data.path {self.path}: {META} does not describe omnissl shards")
        if meta["version"] > VERSION:
            raise DataError(f"data.path {self.path}: written by a newer omnissl (shard format {meta['version']}, "
                            f"this one reads {VERSION}); upgrade omnissl")
        return meta

    def _read_arrays(self, file: Path) -> dict[str, np.ndarray]:
        try:
            with np.load(file, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"data.path {self.path}: {file.name} cannot be read ({exc}); write the shards again") from exc
        bad = [name for name, values in arrays.items() if len(values) != self.num_samples]
        if bad or "sample_ids" not in arrays:
            raise DataError(f"data.path {self.path}: {file.name} does not hold one entry per sample ({bad or 'no ids'})")
        return arrays

    def _check_options(self, recorded: dict[str, Any], given: dict[str, Any]) -> None:
        for key, value in given.items():
            if key not in recorded:
                known = ", ".join(sorted(recorded)) or "none"
                raise DataError(f"data.{key}: the shards at {self.path} were written by data set {self.data_set!r} "
                                f"(modality {self.modality_name!r}), which has no option {key!r} (its options: "
                                f"{known})")
            if _plain(value) != _plain(recorded[key]):
                raise DataError(f"data.{key} is {value!r}, but the shards at {self.path} were written with "
                                f"{recorded[key]!r}: write shards with this setting, or drop data.{key}")

    # ----- the map-style data set -----
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} of {self.num_samples}")
        layout, *arrays = self.stream()[int(index)]
        return codec.decode(layout, arrays, f"data.path {self.path}")

    def get_samples(self, indices: Sequence[int]) -> list[Any]:
        """``[self[i] for i in indices]`` in one pass: a local folder's samples are read from
        memory maps of its chunks (:class:`omnissl.datasets.chunks.ChunkReader`), an
        object store's one by one through LitData, which fetches their chunks. The loader reads
        each batch this way (:func:`omnissl.datasets.read_samples`)."""
        index = self._checked(indices)
        where = f"data.path {self.path}"
        if self._reader is None:
            stream = self.stream()
            return [codec.decode(item[0], item[1:], where) for item in (stream[int(i)] for i in index)]
        out: list[Any] = [None] * len(index)
        for rows, layout, arrays in self._reader.read_stacks(index):
            for i, row in enumerate(rows.tolist()):
                out[row] = codec.decode(layout, [stack[i, ...] for stack in arrays], where)
        return out

    def get_stacks(self, indices: Sequence[int]) -> list[Stack]:
        """The samples at ``indices`` as stacks of samples that differ only in their arrays'
        values (:func:`omnissl.datasets.read_stacks`); from a local folder each stacked array is
        gathered once, straight from the chunk's memory map, in the order of ``indices``."""
        index = self._checked(indices)
        if self._reader is None:
            return stack_samples(self.get_samples(index))
        where = f"data.path {self.path}"
        return [Stack(rows, codec.decode(layout, arrays, where))
                for rows, layout, arrays in self._reader.read_stacks(index)]

    def _checked(self, indices: Sequence[int]) -> Sequence[int]:
        bad = [i for i in (min(indices, default=0), max(indices, default=0)) if not 0 <= i < self.num_samples]
        if bad:
            raise IndexError(f"sample {int(bad[0])} of {self.num_samples}")
        return indices

    def run_files(self) -> dict[str, Any]:
        """The side files the writing data set gives a run (``audio_stats.json``, ...), as recorded
        when the shards were written (:func:`omnissl.datasets.write_run_files`)."""
        return dict(self._run_files)

    def stream(self) -> Any:
        """The LitData ``StreamingDataset`` of this process (a DataLoader worker opens its own): how
        one sample is read, and a batch from an object store."""
        if self._stream is None or self._pid != os.getpid():
            litdata = _litdata()
            # Random access: decode one sample, not a window of its neighbours, and slice it straight
            # from the memory map; LitData's page of neighbours (256 KiB, found by a Python loop over
            # their offsets) serves sequential reads and cost more than the read itself here.
            options: dict[str, Any] = {"batch_decode": False}
            os.environ.setdefault("LITDATA_POSIX_PAGE_BYTES", "0")  # LitData's own setting: a user's value wins
            if self.remote:
                from omnissl.cache import cache_folder, entry_key

                options["cache_dir"] = str(cache_folder("shards", self.cache_dir) / entry_key(self.path) / "chunks")
            try:
                self._stream = litdata.StreamingDataset(self.path, serializers=codec.serializers(), **options)
            except Exception as exc:
                raise DataError(f"data.path {self.path}: LitData cannot open the shards ({exc!r})") from exc
            self._pid = os.getpid()
        return self._stream

    def summary(self) -> dict[str, Any]:
        """The data summary of the data set that wrote the shards, and where they are."""
        return {**self._summary, "shards": self.path}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None, "_pid": None}  # a spawned worker opens its own


def _plain(value: Any) -> Any:
    """A recipe value as JSON holds it (tuples as lists), for comparison with the recorded one."""
    return json.loads(json.dumps(value))
