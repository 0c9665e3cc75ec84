"""On-disk cache of preprocessed windows, memory-mapped on read, built on :mod:`omnissl.cache`.

Key = :func:`omnissl.cache.entry_key` of (cache format version, the content of the record and of
every file it depends on: a WFDB header's signal files, a ``.npy``'s side file, and the
preprocessing settings); content digests are remembered by stat (:class:`omnissl.cache.ContentKeys`),
so a warm start reads no record. Windows are a ``.npy`` opened with ``mmap_mode="r"``, written
atomically (:func:`omnissl.cache.write_array`, which refuses non-finite values), the side file
last, so its presence means the entry is complete; a damaged entry is deleted with a warning
and rebuilt.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from omnissl.cache import ContentKeys, cache_folder, entry_key, write_array, write_json
from omnissl_ecg.preprocessing import Preprocessing, Windows
from omnissl_ecg.readers import companions

FORMAT_VERSION = 1


class WindowCache:
    """Preprocessed windows by (file content, settings).

    Args:
        cache_dir: the recipe's ``data.cache_dir``; None: ``$OMNISSL_CACHE/ecg`` or the platform cache.
        settings: the preprocessing settings, part of every key.
    """

    def __init__(self, cache_dir: str | None, settings: Preprocessing):
        self.folder = cache_folder("ecg", cache_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings_key = settings.key()
        self.keys = ContentKeys(self.folder / "index.json")

    def key(self, path: Path) -> str:
        files = [path, *[p for p in companions(path) if p.is_file()]]
        return entry_key(FORMAT_VERSION, self.keys.contents(files), self.settings_key)

    def save_index(self) -> None:
        self.keys.save()

    def load(self, key: str, where: str) -> Windows | None:
        """The cached windows (memory-mapped), or None when absent or damaged (then deleted, warned)."""
        meta_path, data_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        if not (meta_path.is_file() and data_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = np.load(data_path, mmap_mode="r", allow_pickle=False)
            if data.dtype != np.float32 or list(data.shape) != list(meta["shape"]):
                raise ValueError(f"it holds {data.dtype} {list(data.shape)}, its side file says float32 {meta['shape']}")
            rates = meta["heart_rate"]
            return Windows(data, np.asarray(meta["leads"], dtype=np.int64), list(meta["names"]), float(meta["sfreq"]),
                           None if rates is None else np.array([np.nan if r is None else r for r in rates]),
                           meta["report"])
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            warnings.warn(f"cache entry {data_path} of {where} is damaged ({type(exc).__name__}: {exc}); deleting it "
                          f"and preprocessing the record again")
            for damaged in (meta_path, data_path):
                damaged.unlink(missing_ok=True)
            return None

    def store(self, key: str, windows: Windows, where: str) -> Windows:
        """Write atomically (the data, then the side file) and return the memory-mapped copy."""
        write_array(self.folder / f"{key}.npy", np.ascontiguousarray(windows.data, dtype=np.float32),
                    f"windows of {where}")
        meta = windows.meta()
        if meta["heart_rate"] is not None:  # NaN (no beat found) is "no value": stored as null
            meta["heart_rate"] = [None if np.isnan(r) else r for r in meta["heart_rate"]]
        write_json(self.folder / f"{key}.json", meta)
        loaded = self.load(key, where)
        assert loaded is not None
        return loaded
