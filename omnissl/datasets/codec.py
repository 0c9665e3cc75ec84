"""One sample as LitData stores it: a JSON layout and numeric arrays, nothing pickled.

A plugin's sample is whatever its modality's ``tokenize`` reads: a dict of arrays, tensors, strings
and numbers, lists of them, or a dataclass (omnissl-molecule's ``MoleculeArrays``). LitData
flattens a sample's pytree and picks a serializer per leaf from the first sample, falling back to
pickle for types it does not know; it would also store a string that names an existing file as
that file's bytes. So a sample is written here in a fixed form with two kinds of leaf only:

- one ``str``: the *layout*, JSON, with every array replaced by a reference, and
- numeric arrays, through LitData's ``numpy`` serializer (its header holds each array's dtype and
  shape, so dtypes and shapes may differ from sample to sample).

Reading refuses a shard folder whose ``index.json`` names any other serializer (``pickle``,
``file``, ...), so opening shards never runs code from them. A dataclass in a sample is rebuilt by
calling the class with its fields, and only a dataclass defined under ``omnissl`` or an
``omnissl_<name>`` plugin package.

Layout nodes: JSON ``null``, booleans, numbers, strings and objects (dicts with string keys) stand
for themselves; a JSON list is always a tagged node: ``["a", k]`` array ``k``, ``["T", k]`` a torch
tensor of array ``k``, ``["l", [...]]`` a list, ``["t", [...]]`` a tuple, ``["g", value, dtype]`` a
numpy scalar, ``["u", nested, dtype]`` an array of strings, ``["c", "module:Class", {...}]`` a
dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

from omnissl.errors import DataError

LAYOUT, ARRAY = "str", "numpy"  # the only two serializer names a shard folder may use
ARRAY_KINDS = "biufc"  # numpy dtype kinds stored as arrays: bool, signed, unsigned, float, complex
PACKAGE_ROOTS = ("omnissl",)  # and "omnissl_*": where a sample's dataclass may live


def encode(sample: Any, where: str, finite: bool = True) -> tuple[str, list[np.ndarray]]:
    """``(layout, arrays)`` for one sample; ``where`` names it in errors ("digits sample 17").
    ``finite=False`` skips the check for NaN and infinity (the arrays are not stored: grouping
    samples by layout, :func:`omnissl.datasets.stack_samples`).

    Raises:
        DataError: a value of a type shards cannot hold, or (``finite``) a non-finite number.
    """
    arrays: list[np.ndarray] = []
    layout = _encode(sample, arrays, where, "sample", finite)
    return json.dumps(layout, separators=(",", ":"), allow_nan=not finite), arrays


def _encode(value: Any, arrays: list[np.ndarray], where: str, key: str, finite: bool) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, np.generic):
        if isinstance(value, float) and finite and not np.isfinite(value):
            raise DataError(f"{where}: {key} is {value}; a non-finite value never enters shards")
        return value
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise DataError(f"{where}: {key} has a key {bad[0]!r} that is not a string; shards hold dicts with "
                            f"string keys")
        return {k: _encode(v, arrays, where, f"{key}[{k!r}]", finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, where, f"{key}[{i}]", finite) for i, v in enumerate(value)]
        return ["t" if isinstance(value, tuple) else "l", items]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return ["u", value.tolist(), value.dtype.str]
        return ["a", _add_array(value, arrays, where, key, finite)]
    if isinstance(value, np.generic):
        if value.dtype.kind not in ARRAY_KINDS or value.dtype.kind == "c":
            raise DataError(f"{where}: {key} is a numpy {value.dtype} scalar, which shards cannot hold")
        if finite:
            _check_finite(np.asarray(value), where, key)
        return ["g", value.item(), value.dtype.str]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        plain = value.detach().cpu().as_subclass(torch.Tensor)  # a MONAI MetaTensor's voxels, without its meta
        if plain.dtype == torch.bfloat16:
            raise DataError(f"{where}: {key} is a bfloat16 tensor, which numpy (and so shards) cannot hold; "
                            f"return float32 from the data set")
        return ["T", _add_array(plain.numpy(), arrays, where, key, finite)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = dataclasses.fields(value)
        if any(not f.init for f in fields):
            raise DataError(f"{where}: {key} is a {cls.__qualname__} with fields its constructor does not take; "
                            f"shards rebuild a dataclass by calling it with its fields")
        _check_importable(cls.__module__, cls.__qualname__, where)
        return ["c", f"{cls.__module__}:{cls.__qualname__}",
                {f.name: _encode(getattr(value, f.name), arrays, where, f"{key}.{f.name}", finite) for f in fields}]
    raise DataError(f"{where}: {key} is a {type(value).__module__}.{type(value).__qualname__}, which shards cannot "
                    f"hold (they hold numbers, strings, numpy arrays, tensors, lists, dicts and dataclasses of them, "
                    f"and pickle nothing)")


def _add_array(array: np.ndarray, arrays: list[np.ndarray], where: str, key: str, finite: bool) -> int:
    if array.dtype.kind not in ARRAY_KINDS:
        raise DataError(f"{where}: {key} is an array of dtype {array.dtype}; shards hold numeric and boolean "
                        f"arrays (and arrays of strings)")
    if finite:
        _check_finite(array, where, key)
    native = array.dtype.newbyteorder("=")
    arrays.append(np.asarray(array, dtype=native, order="C"))  # (ascontiguousarray makes 0-d arrays 1-d)
    return len(arrays) - 1


def _check_finite(array: np.ndarray, where: str, key: str) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise DataError(f"{where}: {key} holds NaN or infinity; a non-finite value never enters shards (the data "
                        f"set should skip or repair this sample)")


def _check_importable(module: str, qualname: str, where: str) -> None:
    root = module.split(".")[0]
    if not (root in PACKAGE_ROOTS or root.startswith("omnissl_")):
        raise DataError(f"{where}: a sample holds a {module}.{qualname}; shards rebuild dataclasses of omnissl and "
                        f"its plugins (omnissl_<name> packages) only; return a dict of arrays instead")


def decode(layout: str, arrays: Sequence[np.ndarray], where: str = "shards") -> Any:
    """The sample that :func:`encode` turned into ``(layout, arrays)``."""
    try:
        return _builder(layout)(arrays, where)
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: a sample's layout does not match its arrays ({exc!r}); the shards are damaged: "
                        f"write them again with omnissl shard") from exc


@functools.lru_cache(maxsize=4096)
def _builder(layout: str) -> Callable[[Sequence[np.ndarray], str], Any]:
    # Samples of one data set share a handful of layouts: each is parsed once into a function
    # that builds the sample from its arrays (new containers each call: nothing is shared
    # between samples but strings and numbers).
    return _compile(json.loads(layout))


def _compile(node: Any) -> Callable[[Sequence[np.ndarray], str], Any]:
    """A function ``(arrays, where) -> value`` that builds the layout node ``node``."""
    if isinstance(node, dict):
        items = [(k, _compile(v)) for k, v in node.items()]
        return lambda arrays, where: {k: build(arrays, where) for k, build in items}
    if not isinstance(node, list):
        return lambda arrays, where: node
    tag = node[0]
    if tag == "a":
        k = node[1]
        return lambda arrays, where: arrays[k]
    if tag == "T":
        k = node[1]

        def tensor(arrays: Sequence[np.ndarray], where: str) -> Any:
            import torch

            return torch.from_numpy(arrays[k])
        return tensor
    if tag in ("l", "t"):
        parts = [_compile(v) for v in node[1]]
        container = list if tag == "l" else tuple
        return lambda arrays, where: container([build(arrays, where) for build in parts])
    if tag == "g":
        value, dtype = node[1], np.dtype(node[2])
        return lambda arrays, where: dtype.type(value)
    if tag == "u":
        nested, dtype = node[1], np.dtype(node[2])
        return lambda arrays, where: np.array(nested, dtype=dtype)
    if tag == "c":
        path, fields = node[1], [(k, _compile(v)) for k, v in node[2].items()]
        return lambda arrays, where: _dataclass(path, where)(**{k: build(arrays, where) for k, build in fields})
    raise ValueError(f"unknown layout tag {tag!r}")


@functools.lru_cache(maxsize=64)
def _dataclass(path: str, where: str) -> type:
    module, _, qualname = path.partition(":")
    _check_importable(module, qualname, where)
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    if not (isinstance(value, type) and dataclasses.is_dataclass(value)):
        raise DataError(f"{where}: the shards name {path} as a sample's class, which is not a dataclass; refusing "
                        f"to call it")
    return value


def serializers() -> dict[str, Any]:
    """LitData serializers that store every string as a string and every array with its header.

    LitData's own choose by content (a string naming an existing file would be stored as the
    file's bytes; 0-d and 1-d arrays go to other serializers): these two, registered under the
    built-in names, take every string and every array first. What they write is LitData's
    ``str`` and ``numpy`` format, readable by LitData's own serializers.
    """
    from litdata.streaming.serializers import NumpySerializer, StringSerializer

    class AnyString(StringSerializer):
        def can_serialize(self, item: Any) -> bool:
            return isinstance(item, str)

    class AnyArray(NumpySerializer):
        def can_serialize(self, item: Any) -> bool:
            return isinstance(item, np.ndarray)

    return {LAYOUT: AnyString(), ARRAY: AnyArray()}


def check_index(config: dict[str, Any], where: str) -> None:
    """Refuse a LitData ``index.json`` ``config`` that omnissl did not write: any serializer but
    ``str`` and ``numpy`` (``pickle`` would run code on reading), compression, encryption, another
    item loader, or a first leaf that is not the layout."""
    formats = list(config.get("data_format") or [])
    other = sorted({f for f in formats if f.split(":")[0] not in (LAYOUT, ARRAY)})
    if other:
        raise DataError(f"{where}: its index.json stores leaves with the serializers {other}; omnissl reads shards "
                        f"of strings and numeric arrays only (a 'pickle' leaf would run code when read), as "
                        f"omnissl shard writes them")
    if not formats or formats[0] != LAYOUT or any(f != ARRAY for f in formats[1:]):
        raise DataError(f"{where}: its samples are not omnissl samples (a layout string, then arrays); write them "
                        f"with omnissl shard")
    for key in ("compression", "encryption"):
        if config.get(key):
            raise DataError(f"{where}: its chunks use {key} {config[key]!r}, which omnissl shard never writes")
    if config.get("item_loader", "PyTreeLoader") != "PyTreeLoader":
        raise DataError(f"{where}: its chunks were written by LitData's {config['item_loader']}, not as omnissl "
                        f"samples; write them with omnissl shard")
