"""Content digests of input files, remembered by their stat, for plugins' cache keys.

A cache keyed by file content stays right when a file is rewritten in place, but hashing
every file at every start reads the whole corpus. :class:`FileDigests` remembers each
digest in a JSON index next to the cache, under the file's (size, modification time,
change time, inode): a warm start on unchanged files reads none of them, and any write
moves the change time (the kernel sets it, even when a tool restores the modification time
with ``cp -p`` or ``rsync -t``), so a changed file is hashed again.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


class FileDigests:
    """``digests(path, name)`` is ``functions[name](path)``, computed once per version of the file.

    Args:
        index: the JSON file that remembers digests (created on :meth:`save`).
        functions: name -> function of a file's content (a hash, or anything derived from the
            file that is worth not re-reading: the files a header names, say). With one
            function, ``name`` may be left out.
    """

    def __init__(self, index: Path, functions: dict[str, Callable[[Path], str]]):
        self.index_path = Path(index)
        self.functions = dict(functions)
        self._index = self._read()
        self._new: dict[str, dict] = {}

    def __call__(self, path: Path, name: str | None = None) -> str:
        if name is None:
            (name,) = self.functions  # only one function: it is the one
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = f"{name}:{Path(path).resolve()}"
        entry = self._index.get(key)
        if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("digest"), str):
            return entry["digest"]
        value = self.functions[name](Path(path))
        self._index[key] = self._new[key] = {"stat": stamp, "digest": value}
        return value

    def save(self) -> None:
        """Write what was learnt since the last save, merged with the index on disk (another
        process may have written it meanwhile); atomic. A lost update only costs a re-hash."""
        if not self._new:
            return
        merged = {**self._read(), **self._new}
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.index_path.with_name(f"{self.index_path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:6]}")
        partial.write_text(json.dumps(merged))
        os.replace(partial, self.index_path)
        self._index, self._new = merged, {}

    def _read(self) -> dict[str, dict]:
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, ValueError):  # absent, or unreadable: hash again
            return {}
        return index if isinstance(index, dict) else {}
