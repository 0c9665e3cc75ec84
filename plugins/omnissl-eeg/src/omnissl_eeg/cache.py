"""On-disk cache of preprocessed windows, memory-mapped on read.

Key = SHA-256 of (cache format version, preprocessing settings, and the content of every file
the recording's windows depend on: the recording, a BrainVision header's data and marker
files, an EEGLAB set's ``.fdt``, a FIF's split parts, and in a BIDS tree the side files next
to it). A file's content is hashed as its size and first and last MiB: a file rewritten in
place with the same size is caught, and a warm start does not read folders of gigabyte
recordings whole. Those hashes are remembered in ``index.json`` by the files' stat
(:class:`omnissl.digests.FileDigests`), so a warm start on an unchanged folder reads no file.
The windows are a ``.npy`` file opened with ``mmap_mode="r"``: the second epoch reads pages,
never the raw recording.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnissl.digests import FileDigests
from omnissl_eeg.preprocessing import Preprocessing, Windows

FORMAT_VERSION = 3  # 2: channels marked bad in the recording are dropped; 3: companion files in the key
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


@dataclass
class _Listing:
    names: set[str]
    by_stem: dict[str, list[str]]  # see _stem
    sides: list[str]  # .tsv and .json files (BIDS side files)


def _stem(name: str) -> str:
    """The name without its extension; a FIF split part (``rec_raw-1.fif``) without its part
    number too, so that it groups with ``rec_raw.fif``."""
    lower = name.lower()
    if lower.endswith(".fif.gz"):
        return re.sub(r"-\d+$", "", name[: -len(".fif.gz")])
    if lower.endswith(".fif"):
        return re.sub(r"-\d+$", "", name[: -len(".fif")])
    return Path(name).stem


def _brainvision_files(header: Path) -> str:
    """The data and marker file names a BrainVision header names (``DataFile=``, ``MarkerFile=``),
    one per line."""
    try:
        text = header.read_text(encoding="latin-1")[:65536]
    except OSError:
        return ""
    names = re.findall(r"^\s*(?:DataFile|MarkerFile)\s*=\s*(.+?)\s*$", text, re.MULTILINE)
    return "\n".join(sorted({Path(name.strip()).name for name in names}))


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
        # Content hashes, and the files a BrainVision header names, remembered by stat: a warm
        # start reads no file.
        self._digests = FileDigests(folder / "index.json", {"ends-sha256": content_hash,
                                                            "vhdr-files": _brainvision_files})
        self._listings: dict[Path, _Listing] = {}

    def key(self, path: Path, bids: bool = False) -> str:
        """The cache key of ``path``'s windows under these settings (see the module docstring)."""
        files = [path, *self.companions(path, bids)]
        contents = "|".join(f"{f.name}:{self._digests(f, 'ends-sha256')}" for f in files)
        text = f"{FORMAT_VERSION}|{contents}|{self.settings_key}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def companions(self, path: Path, bids: bool = False) -> list[Path]:
        """Other files whose content ``path``'s windows depend on, sorted."""
        listing = self._listing(path.parent)
        found = set(listing.by_stem.get(_stem(path.name), ())) - {path.name}  # rec.eeg/.vmrk/.fdt, rec-1.fif
        if bids:
            found.update(listing.sides)  # channels.tsv, electrodes.tsv, coordsystem.json, ...
        if path.suffix.lower() == ".vhdr":  # the header may name data and marker files of other stems
            found.update(set(self._digests(path, "vhdr-files").split("\n")) & listing.names)
        return [path.parent / other for other in sorted(found)]

    def save_index(self) -> None:
        """Remember the content hashes computed since the last save (see :mod:`omnissl.digests`)."""
        self._digests.save()

    def _listing(self, folder: Path) -> _Listing:
        """``folder``'s files grouped by stem, read once per folder (a flat folder of many
        recordings must not be scanned once per recording)."""
        if folder not in self._listings:
            listing = _Listing(set(), {}, [])
            for entry in os.scandir(folder):
                if not entry.is_file():
                    continue
                listing.names.add(entry.name)
                listing.by_stem.setdefault(_stem(entry.name), []).append(entry.name)
                if entry.name.lower().endswith((".tsv", ".json")):
                    listing.sides.append(entry.name)
            self._listings[folder] = listing
        return self._listings[folder]

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
