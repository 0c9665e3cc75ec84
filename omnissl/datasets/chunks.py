"""The chunk files of a local shard folder, read in place: the batched read of ``data.name: shards``.

``StreamingDataset.__getitem__(i)`` finds sample ``i``'s chunk, asks LitData's reader and item
loader for it and runs a serializer object per leaf: fixed work per sample that the loop pays
again for every sample of every batch. The samples ``omnissl shard`` writes have one fixed form
(a layout string, then numeric arrays, :mod:`omnissl.datasets.codec`) in LitData's plain chunk
layout, the one its ``PyTreeLoader`` reads:

- a chunk file: ``num_items`` (uint32), ``num_items + 1`` offsets of the items from the file's
  start (uint32), then the items;
- an item: the byte size of each leaf (uint32 each), then the leaves;
- the layout leaf: UTF-8 text (LitData's ``str`` format); an array leaf (its ``numpy`` format): a
  dtype code, the number of dimensions and the shape (uint32 each), then the values in C order.

So a batch is read here from memory maps of the chunk files with a fixed number of array
operations, whatever its size: for the samples laid out alike (the same leaf sizes, layout string
and array headers: the windows of one recording, say) each array is gathered straight from the
map into its stack (:class:`omnissl.datasets.Stack`), one copy of only its values, one gather per
chunk. Each chunk's offset table is checked against ``index.json`` when it is mapped, every
sample's headers in a batch against a parsed and checked sample's; a chunk in another layout is
refused, naming it. Object stores go through LitData (``ShardDataset.get_samples``), which
fetches and evicts their chunks.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from omnissl.errors import DataError

_ARRAY_HEAD = struct.Struct("<II")  # dtype code, number of dimensions


class _Item(NamedTuple):
    """How the items of one kind are laid out: items whose bytes at ``shared`` equal ``head`` (the
    leaf sizes, the layout string and the arrays' headers) have this ``layout`` and their arrays
    at the ``fields`` (offset of the values in the item, dtype, shape)."""

    layout: str
    shared: np.ndarray  # (columns,) int64 byte offsets in the item
    head: np.ndarray  # (columns,) uint8: the parsed item's bytes there
    fields: tuple[tuple[int, np.dtype, tuple[int, ...]], ...]


class ChunkReader:
    """The items of a local shard folder, read from memory maps of its chunk files.

    Args:
        folder: the shard folder.
        chunks: ``index.json``'s chunk entries (``filename``, ``chunk_size``), in sample order.
        leaves: leaves per item: the layout, then the arrays.
        where: names the shards in errors (``data.path DIR``).
    """

    MAPPED = 64  # chunk files a process keeps mapped (least recently used unmapped first)
    ITEM_TYPES = 256  # item types (_Item) of distinct items kept (all forgotten when full)

    def __init__(self, folder: Path, chunks: Sequence[dict[str, Any]], leaves: int, where: str):
        from litdata.constants import _NUMPY_DTYPES_MAPPING  # LitData's numpy dtype codes

        self.files = [Path(folder) / str(chunk["filename"]) for chunk in chunks]
        self.first = np.concatenate([[0], np.cumsum([int(chunk["chunk_size"]) for chunk in chunks])])  # [chunks + 1]
        self.leaves = int(leaves)
        self.where = where
        self._dtypes = {code: np.dtype(dtype) for code, dtype in _NUMPY_DTYPES_MAPPING.items()
                        if np.dtype(dtype).kind in "biufc"}
        self._items: dict[tuple, _Item] = {}  # per distinct item (see _item_type)
        self._recent: dict[int, _Item] = {}  # item length -> the item type last read with it
        self._maps: OrderedDict[int, tuple[np.ndarray, np.ndarray, dict]] = OrderedDict()
        self._pid = os.getpid()

    def read_stacks(self, indices: Sequence[int]) -> list[tuple[np.ndarray, str, list[np.ndarray]]]:
        """The samples at ``indices``, in groups that share their layout and their arrays' dtypes
        and shapes: ``(rows, layout, arrays)`` per group, ``rows`` the group's positions in
        ``indices`` and ``arrays[k]`` (len(rows), *shape) the group's k-th arrays, stacked
        (writable, independent of the files). Each array's values are copied from the memory map
        into its stack in one operation per chunk (:meth:`_stack`)."""
        if self._pid != os.getpid():  # a forked DataLoader worker maps the files itself
            self._maps, self._pid = OrderedDict(), os.getpid()
        # In the batch's order (not the files'): a batch of one kind is then its stacks as they are,
        # rows 0..B-1, that a modality can reshape into tokens without reordering them.
        ordered = np.asarray(indices, dtype=np.int64)
        rows = np.arange(len(ordered))  # [B]
        chunk = np.searchsorted(self.first, ordered, side="right") - 1  # [B]
        parts = self._by_chunk(chunk)
        if len(parts) == 1:
            offsets = self._mapped(parts[0][0])[0]
            local = ordered - self.first[parts[0][0]]
            starts = offsets[local]  # [B] each sample's offset in its chunk file
            lengths = offsets[local + 1] - starts  # [B] and its bytes
        else:
            starts, lengths = np.empty(len(rows), dtype=np.int64), np.empty(len(rows), dtype=np.int64)
            for c, mine in parts:
                offsets = self._mapped(c)[0]
                local = ordered[mine] - self.first[c]
                starts[mine], lengths[mine] = offsets[local], offsets[local + 1] - offsets[local]
        return self._stack(rows, chunk, starts, lengths, ordered)

    def _by_chunk(self, chunk: np.ndarray) -> list[tuple[int, Any]]:
        """(chunk, which samples) for each chunk in ``chunk`` (each sample's): usually just one."""
        if (chunk == chunk[0]).all():
            return [(int(chunk[0]), slice(None))]
        return [(c, chunk == c) for c in np.unique(chunk).tolist()]

    def _stack(self, rows: np.ndarray, chunk: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               index: np.ndarray) -> list[tuple[np.ndarray, str, list[np.ndarray]]]:
        """Samples ``rows`` (``index`` in the shards, in ``chunk`` from ``starts`` on, ``lengths``
        bytes) stacked. When all are laid out alike (the same leaf sizes, layout and arrays'
        headers: the byte columns of an :class:`_Item`, read for every sample and compared), each
        stacked array is gathered straight from the chunks (:meth:`_gather`), one copy of just its
        values; else they are grouped by length, or by those bytes, and each group stacked (or
        read alone: :meth:`_single`). The item type of the last batch of this length is tried
        first, so a batch like the one before parses no header."""
        parts = self._by_chunk(chunk)
        length = int(lengths[0])
        if (lengths == length).all():
            item = self._recent.get(length)
            head = None if item is None else self._columns(parts, starts, item)  # [n, header bytes]
            if head is None or not (head == item.head).all():
                item = self._item_type(int(chunk[0]), int(starts[0]), length, int(index[0]))
                head = self._columns(parts, starts, item)
            if (head == item.head).all():  # each sample laid out as the item parsed, whose sizes it checked
                self._recent[length] = item
                return [(rows, item.layout, [self._gather(parts, starts, *field) for field in item.fields])]
            keys = [row.tobytes() for row in head]  # samples laid out otherwise (another layout string, say)
        else:
            keys = lengths.tolist()
        alike: dict[Any, list[int]] = {}
        for b, key in enumerate(keys):
            alike.setdefault(key, []).append(b)
        stacks = []
        for members in alike.values():
            if len(members) == 1:  # a sample like no other in the batch: read on its own
                b = members[0]
                stacks.append(self._single(rows[b:b + 1], int(chunk[b]), int(starts[b]), int(index[b])))
            else:  # alike by the first's columns: stacked, checked again by their own first's
                group = np.array(members)
                stacks += self._stack(rows[group], chunk[group], starts[group], lengths[group], index[group])
        return stacks

    def _single(self, rows: np.ndarray, chunk: int, start: int, sample: int
                ) -> tuple[np.ndarray, str, list[np.ndarray]]:
        """One sample (``sample`` in the shards, in ``chunk`` at ``start``) as a stack of one, read
        with ``struct`` and one copy per array."""
        data = self._mapped(chunk)[1]
        sizes = struct.unpack_from(f"<{self.leaves}I", data, start)
        layout = bytes(data[start + 4 * self.leaves:start + 4 * self.leaves + sizes[0]]).decode("utf-8")
        arrays = [data[start + at:start + at + math.prod(shape) * dtype.itemsize].view(dtype).reshape(1, *shape)
                  .copy() for at, dtype, shape in self._arrays(data, start, sizes, sample)]
        return rows, layout, arrays

    def _arrays(self, data: np.ndarray, start: int, sizes: tuple[int, ...], sample: int
                ) -> list[tuple[int, np.dtype, tuple[int, ...]]]:
        """(offset of its values in the item, dtype, shape) of each array of the item at ``start``
        with leaves of ``sizes``, from the arrays' headers, each checked against its size."""
        at, out = 4 * self.leaves + sizes[0], []
        for k, size in enumerate(sizes[1:]):
            code, ndim = _ARRAY_HEAD.unpack_from(data, start + at)
            shape = struct.unpack_from(f"<{ndim}I", data, start + at + 8)
            dtype, head = self._dtypes.get(code), 8 + 4 * ndim
            if dtype is None or head + math.prod(shape) * dtype.itemsize != size:
                raise DataError(f"{self.where}: sample {sample}'s array {k} has a header that does not match its "
                                f"size (LitData dtype code {code}, shape {shape}, {size} bytes); the shards are "
                                f"damaged or were not written by omnissl shard: write them again")
            out.append((at + head, dtype, shape))
            at += size
        return out

    def _columns(self, parts: list[tuple[int, Any]], starts: np.ndarray, item: _Item) -> np.ndarray:
        """(samples, header bytes): each sample's bytes at ``item.shared`` (its leaf sizes, layout
        and arrays' headers), one gather per chunk."""
        if len(parts) == 1:
            return self._mapped(parts[0][0])[1][starts[:, None] + item.shared]
        out = np.empty((len(starts), len(item.shared)), dtype=np.uint8)
        for c, mine in parts:
            out[mine] = self._mapped(c)[1][starts[mine, None] + item.shared]
        return out

    def _gather(self, parts: list[tuple[int, Any]], starts: np.ndarray, offset: int, dtype: np.dtype,
                shape: tuple[int, ...]) -> np.ndarray:
        """(samples, *shape) ``dtype``: each sample's array at ``offset`` of its item, copied once
        straight into the stack (contiguous, aligned, writable): one gather per chunk from a view
        of the chunk whose element r is the array's bytes from byte ``offset + r`` on, so a memcpy
        of just the array's values per sample (not of the whole item)."""
        size = math.prod(shape) * dtype.itemsize
        if size == 0:
            return np.empty((len(starts), *shape), dtype=dtype)
        if len(parts) == 1:
            out = self._view(parts[0][0], offset, size)[starts]
        else:
            out = np.empty(len(starts), dtype=np.dtype((np.void, size)))
            for c, mine in parts:
                out[mine] = self._view(c, offset, size)[starts[mine]]
        return out.view(dtype).reshape(len(starts), *shape)

    def _view(self, chunk: int, offset: int, size: int) -> np.ndarray:
        """Chunk ``chunk`` as elements of ``size`` bytes, element r the bytes from ``offset + r`` on
        (kept with the chunk's memory map)."""
        _, data, views = self._mapped(chunk)
        view = views.get((offset, size))
        if view is None:
            if len(views) >= self.ITEM_TYPES:
                views.clear()
            view = views[offset, size] = np.ndarray((len(data) - offset - size + 1,), np.dtype((np.void, size)),
                                                    data, offset, (1,))
        return view

    def _item_type(self, chunk: int, start: int, length: int, sample: int) -> _Item:
        """The :class:`_Item` of the item of ``length`` bytes at ``start`` in ``chunk`` (sample
        ``sample``), its arrays' headers checked against their sizes. Kept per distinct item."""
        data = self._mapped(chunk)[1]
        sizes = struct.unpack_from(f"<{self.leaves}I", data, start)
        at = 4 * self.leaves + sizes[0]
        if at + sum(sizes[1:]) != length:
            raise DataError(f"{self.where}: sample {sample}'s leaves add up to {at + sum(sizes[1:])} bytes, its "
                            f"chunk's offsets give {length}; the shards are damaged: write them again")
        arrays = self._arrays(data, start, sizes, sample)
        heads = [range(0, at)] + [range(offset - 8 - 4 * len(shape), offset) for offset, _, shape in arrays]
        shared = np.fromiter((i for span in heads for i in span), dtype=np.int64)
        head = data[start + shared]
        key = (length, head.tobytes())  # the bytes that determine the item type
        known = self._items.get(key)
        if known is None:
            if len(self._items) >= self.ITEM_TYPES:
                self._items.clear()
                self._recent.clear()
            layout = bytes(data[start + 4 * self.leaves:start + at]).decode("utf-8")
            known = self._items[key] = _Item(layout, shared, head, tuple(arrays))
        return known

    def _mapped(self, chunk: int) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], np.ndarray]]:
        """Chunk ``chunk``'s item offsets (items + 1,), its bytes, memory-mapped on first use, and
        the views :meth:`_view` keeps of them."""
        if chunk in self._maps:
            self._maps.move_to_end(chunk)
            return self._maps[chunk]
        file = self.files[chunk]
        try:
            with open(file, "rb") as handle:
                data = np.frombuffer(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.where}: cannot read chunk {file.name} ({exc}); is the shard folder complete?") \
                from exc
        items = int(self.first[chunk + 1] - self.first[chunk])
        header = 4 + 4 * (items + 1)
        table = data[:header].view("<u4").astype(np.int64) if len(data) >= header else None
        offsets = None if table is None else table[1:]
        if (offsets is None or table[0] != items or offsets[0] != header or offsets[-1] != len(data)
                or np.any(np.diff(offsets) < 4 * self.leaves)):
            raise DataError(f"{self.where}: chunk {file.name} is not laid out as omnissl shard writes it ({items} "
                            f"items, as index.json says, then their offsets and the items); write the shards again")
        self._maps[chunk] = (offsets, data, {})
        if len(self._maps) > self.MAPPED:
            self._maps.popitem(last=False)  # unmapped once no array refers to it
        return self._maps[chunk]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": OrderedDict()}  # memory maps do not pickle: a worker maps its own
