"""On-disk cache of preprocessed windows, memory-mapped on read.

Key = SHA-256 of (file size, first and last MiB of the file, preprocessing settings,
cache format version). Hashing the ends of the file instead of size and modification
time catches a file rewritten in place with the same size; hashing only the ends keeps a
warm start fast on folders of gigabyte recordings. The windows are a ``.npy`` file
opened with ``mmap_mode="r"``: the second epoch reads pages, never the raw recording.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from omnissl_eeg.preprocessing import Preprocessing, Windows

FORMAT_VERSION = 2  # 2: channels marked bad in the recording are dropped
_CHUNK = 1 << 20


def content_hash(path: Path) -> str:
    """SHA-256 of a file's size and its first and last MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_CHUNK))
        if size > _CHUNK:
            handle.seek(max(size - _CHUNK, _CHUNK))
            digest.update(handle.read(_CHUNK))
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$OMNISSL_CACHE/eeg``, else ``~/.cache/omnissl/eeg``."""
    base = os.environ.get("OMNISSL_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "omnissl") / "eeg"


class WindowCache:
    """Preprocessed windows by (file content, settings).

    Args:
        folder: where the cache lives (created when missing).
        settings: the preprocessing settings, part of every key.
    """

    def __init__(self, folder: Path, settings: Preprocessing):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings_key = settings.key()

    def key(self, path: Path) -> str:
        text = f"{FORMAT_VERSION}|{content_hash(path)}|{self.settings_key}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: str) -> Windows | None:
        """The cached windows (data memory-mapped), or None when absent."""
        meta_path, data_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        if not (meta_path.is_file() and data_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        data = np.load(data_path, mmap_mode="r", allow_pickle=False)
        return Windows(data=data, channels=meta["channels"], types=np.asarray(meta["types"], dtype=np.int64),
                       positions=np.asarray(meta["positions"], dtype=np.float32), sfreq=meta["sfreq"],
                       labels=None if meta["labels"] is None else np.asarray(meta["labels"]),
                       report=meta["report"])

    def store(self, key: str, windows: Windows) -> Windows:
        """Write atomically (temporary name, then rename) and return the memory-mapped copy."""
        data_tmp = self.folder / f"{key}.npy.tmp{os.getpid()}"
        meta_tmp = self.folder / f"{key}.json.tmp{os.getpid()}"
        with open(data_tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(windows.data, dtype=np.float32), allow_pickle=False)
        meta_tmp.write_text(json.dumps(windows.meta()))
        os.replace(data_tmp, self.folder / f"{key}.npy")
        os.replace(meta_tmp, self.folder / f"{key}.json")  # the side file last: its presence means complete
        loaded = self.load(key)
        assert loaded is not None
        return loaded
