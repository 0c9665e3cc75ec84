"""On-disk cache of preprocessed windows, memory-mapped on read.

Key = SHA-256 of (cache format version, preprocessing settings, and the content of every file
the recording's windows depend on: the recording, a BrainVision header's data and marker
files, an EEGLAB set's ``.fdt``, a FIF's split parts, and in a BIDS tree the side files next
to it). A file's content is hashed whole (BLAKE2b, read in 1 MiB chunks): any edit, even one
in the middle of a file that keeps its size, gives a new key. Those hashes are remembered in
``index.json`` by the files' stat (:class:`omnissl.cache.ContentKeys`), so only a cold start
(or a changed file) reads a file to hash it; a warm start on an unchanged folder reads no file.
The windows are a ``.npy`` file opened with ``mmap_mode="r"``: the second epoch reads pages,
never the raw recording. A damaged entry (a ``.npy`` cut short, a side file that does not
parse or disagrees with it) is deleted with a warning and rebuilt from the recording.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnissl.cache import ContentKeys, entry_key, write_array, write_json
from omnissl_eeg.preprocessing import Preprocessing, Windows

# 2: channels marked bad in the recording are dropped; 3: companion files in the key; 4: whole-file
# content hashes, non-finite windows dropped, the report says why a recording has no window; 5: windows
# overlapping BAD_/EDGE annotations dropped, epochs files, each window's events, channels kept by index.
FORMAT_VERSION = 5


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
        self._keys = ContentKeys(folder / "index.json", {"vhdr-files": _brainvision_files})
        self._listings: dict[Path, _Listing] = {}

    def key(self, path: Path, bids: bool = False) -> str:
        """The cache key of ``path``'s windows under these settings (see the module docstring)."""
        return entry_key(FORMAT_VERSION, self._keys.contents([path, *self.companions(path, bids)]),
                         self.settings_key)

    def companions(self, path: Path, bids: bool = False) -> list[Path]:
        """Other files whose content ``path``'s windows depend on, sorted."""
        listing = self._listing(path.parent)
        found = set(listing.by_stem.get(_stem(path.name), ())) - {path.name}  # rec.eeg/.vmrk/.fdt, rec-1.fif
        if bids:
            found.update(listing.sides)  # channels.tsv, electrodes.tsv, coordsystem.json, ...
        if path.suffix.lower() == ".vhdr":  # the header may name data and marker files of other stems
            found.update(set(self._keys.derived(path, "vhdr-files").split("\n")) & listing.names)
        return [path.parent / other for other in sorted(found)]

    def save_index(self) -> None:
        """Remember the content hashes computed since the last save (see :mod:`omnissl.cache`)."""
        self._keys.save()

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

    def load(self, key: str, where: str = "") -> Windows | None:
        """The cached windows (data memory-mapped), or None when absent or damaged.

        A damaged entry (a ``.npy`` cut short by a full disk or a killed copy, a side file that
        does not parse, or the two disagreeing on shape or type) is deleted with a warning naming
        ``where`` (the recording), so that the caller rebuilds it.
        """
        meta_path, data_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        if not (meta_path.is_file() and data_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = np.load(data_path, mmap_mode="r", allow_pickle=False)  # checks the file holds the shape
            if data.dtype != np.float32 or list(data.shape) != list(meta["shape"]):
                raise ValueError(f"it holds {data.dtype} {list(data.shape)}, its side file says float32 "
                                 f"{meta['shape']}")
            return Windows(data=data, channels=meta["channels"], types=np.asarray(meta["types"], dtype=np.int64),
                           positions=np.asarray(meta["positions"], dtype=np.float32), sfreq=meta["sfreq"],
                           labels=None if meta["labels"] is None else np.asarray(meta["labels"]),
                           events=meta["events"], report=meta["report"])
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            warnings.warn(f"cache entry {data_path} of {where or key} is damaged ({type(exc).__name__}: {exc}); "
                          f"deleting it and preprocessing it again")
            for damaged in (meta_path, data_path):
                damaged.unlink(missing_ok=True)
            return None

    def store(self, key: str, windows: Windows) -> Windows:
        """Write atomically (:mod:`omnissl.cache`) and return the memory-mapped copy.

        Raises:
            omnissl.cache.NonFiniteError: the windows or their side file hold NaN or infinity
                (a DataError: the recording is skipped, never cached).
        """
        what = f"EEG windows (cache entry {key})"
        write_array(self.folder / f"{key}.npy", np.ascontiguousarray(windows.data, dtype=np.float32), what)
        write_json(self.folder / f"{key}.json", windows.meta(), what)  # last: its presence means complete
        loaded = self.load(key)
        assert loaded is not None
        return loaded
