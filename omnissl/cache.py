"""Where plugins cache, how they write there, and how entries are keyed: one copy for every plugin.

- **Where**: :func:`cache_root` is ``$OMNISSL_CACHE``, else the platform's cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
  ``%LOCALAPPDATA%`` on Windows) with ``omnissl`` under it; :func:`cache_folder` gives a
  plugin its own folder there, unless the recipe's ``data.cache_dir`` names another.
- **Atomic**: :func:`atomic_file` and :func:`atomic_folder` write under a temporary name
  beside the target, flush the bytes to disk, then rename into place. A writer that raises
  removes its temporary file or folder; one killed mid-write leaves a hidden ``.<name>.*.tmp``
  sibling and never a partial file under the real name, so a reader sees the old entry or
  the new one, whole.
- **Keyed by content**: :class:`ContentKeys` digests input files (BLAKE2b of the whole file)
  and remembers each digest by the file's stat (:class:`omnissl.digests.FileDigests`), so a
  warm start reads no input file and a file rewritten in place gets a new key.
- **Finite**: a non-finite value never enters a cache. :func:`require_finite` refuses an
  array holding NaN or infinity with a message that names it; :func:`write_array` and
  :func:`write_json` apply the rule to what they write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from omnissl.digests import FileDigests
from omnissl.errors import DataError, OmnisslError

ENV = "OMNISSL_CACHE"
_CHUNK = 1 << 20


class WriteError(OmnisslError, OSError):
    """A file or folder could not be written (a full disk, no permission); nothing partial was left."""


class NonFiniteError(DataError, ValueError):
    """An array bound for a cache holds NaN or infinity."""


def cache_root() -> Path:
    """``$OMNISSL_CACHE`` (``~`` expanded), else ``<platform cache folder>/omnissl``."""
    chosen = os.environ.get(ENV)
    if chosen:
        return Path(chosen).expanduser()
    return _platform_cache() / "omnissl"


def _platform_cache() -> Path:
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification: a relative path is invalid and ignored.
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"


def cache_folder(name: str, chosen: str | os.PathLike | None = None) -> Path:
    """The folder a plugin's data set caches in: ``chosen`` (a recipe's ``data.cache_dir``,
    ``~`` expanded) when given, else ``cache_root() / name``. Not created here."""
    return Path(chosen).expanduser() if chosen else cache_root() / name


def _temporary_sibling(path: Path) -> Path:
    # Unique per writer: two processes building the same entry never write into one file.
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; Windows cannot open a folder to sync it)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ours(exc: BaseException, target: Path, tmp: Path) -> bool:
    """Whether ``exc`` is a failure to write ``target`` (through ``tmp``), not, say, a failure to
    read an input inside the ``with`` block, which goes up unchanged."""
    if not isinstance(exc, OSError) or isinstance(exc, WriteError):
        return False
    if exc.filename is None or exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    name = Path(os.fsdecode(exc.filename))
    return name == target or name == tmp or tmp in name.parents


def _write_failed(path: Path, what: str, exc: OSError) -> WriteError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = "no space left on its disk" if full else (exc.strerror or str(exc))
    kept = f"the previous {what} there is intact" if path.exists() else "nothing was left there"
    advice = ("free some space on that disk, or write elsewhere (a cache: set OMNISSL_CACHE or the recipe's "
              "data.cache_dir)" if full else "check that the folder exists and is writable")
    return WriteError(f"cannot write {what} {path}: {reason}; {kept}. To fix: {advice}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, what: str = "cache file") -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path``, renamed to ``path`` when the block
    ends without error (after its bytes reached the disk: fsync), removed when it raises.

    Args:
        path: the file to write (its folder is created).
        what: a few words naming the file in messages ("cache entry", "exported weights").

    Raises:
        WriteError: the file could not be written (an ``OSError`` too); ``path`` is untouched.
    """
    path = Path(path)
    tmp = _temporary_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _ours(exc, path, tmp):
            raise _write_failed(path, what, exc) from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "cache file") -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, what) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, what: str = "cache file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_file`)."""
    return write_bytes(path, text.encode(), what)


def write_json(path: str | os.PathLike, value: Any, what: str = "cache file", indent: int | None = None) -> Path:
    """Write ``value`` as JSON to ``path`` atomically; a NaN or infinite number in it is refused
    (:class:`NonFiniteError`) before anything is written."""
    try:
        text = json.dumps(value, indent=indent, allow_nan=False)
    except ValueError as exc:
        raise NonFiniteError(f"refusing to write {what} {path}: it holds a NaN or infinite number ({exc}); "
                             f"a non-finite value never enters an omnissl cache") from None
    return write_text(path, text + ("\n" if indent is not None else ""), what)


def require_finite(array: Any, what: str, missing_ok: bool = False) -> None:
    """Refuse ``array`` (anything ``np.asarray`` takes) if it holds NaN or infinity.

    Args:
        array: the values bound for a cache.
        what: what they are, for the message ("windows of rec.edf", "distance of CCO").
        missing_ok: NaN means "no value" here (a missing label) and is allowed; infinity is not.

    Raises:
        NonFiniteError: naming ``what``, how many values are bad and where the first one is.
    """
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.inexact):
        return  # integers and booleans are always finite
    bad = np.isinf(values) if missing_ok else ~np.isfinite(values)
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "infinite" if missing_ok else "non-finite"
    allowed = " (NaN, meaning no value, is allowed there)" if missing_ok else ""
    raise NonFiniteError(f"refusing to cache {kind} {what}: {int(bad.sum())} of {values.size} values are "
                         f"{'infinite' if missing_ok else 'NaN or infinite'}{allowed}, the first at index "
                         f"{first}. A non-finite value never enters an omnissl cache: the data set must skip "
                         f"or repair this input before caching it")


def write_array(path: str | os.PathLike, array: np.ndarray, what: str | None = None) -> Path:
    """Save ``array`` as a ``.npy`` file at ``path`` atomically, after :func:`require_finite`
    (``what`` names it in the refusal; default: the file name). Never pickles."""
    require_finite(array, what or str(path))
    with atomic_file(path) as handle:
        np.save(handle, array, allow_pickle=False)
    return Path(path)


def _sync_tree(folder: Path) -> None:
    for parent, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError:  # Windows syncs only handles opened for writing; its rename is what matters
                if os.name == "posix":
                    raise
            finally:
                os.close(fd)
        _fsync_folder(Path(parent))


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, what: str = "cache entry") -> Iterator[Path]:
    """An empty temporary folder beside ``folder`` to fill, renamed to ``folder`` when the
    block ends without error (after every file in it reached the disk), removed when it raises.

    Cache folders are keyed by what they hold, so when ``folder`` appeared meanwhile (another
    process finished the same entry first) it is kept and the temporary one discarded.

    Raises:
        WriteError: the folder could not be written or renamed (an ``OSError`` too).
    """
    folder = Path(folder)
    tmp = _temporary_sibling(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        _sync_tree(tmp)
        try:
            os.replace(tmp, folder)  # fails when ``folder`` exists and is not empty
        except OSError:
            if not folder.is_dir():
                raise
        else:
            _fsync_folder(folder.parent)
    except OSError as exc:
        if _ours(exc, folder, tmp):
            raise _write_failed(folder, what, exc) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b (128-bit) of a file's whole content, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_key(*parts: object, length: int = 32) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts`` (``str`` of each) joined by ``|``."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:length]


class ContentKeys:
    """Cache keys that follow their input files' content and the settings that made the entry.

    Each file is read once per version to digest it (:func:`file_digest`); the digest is
    remembered in ``index`` by the file's size, modification time, change time and inode
    (:class:`~omnissl.digests.FileDigests`), so a warm start stats files and reads none, and
    any rewrite (even one that keeps size and modification time) moves the change time and
    so the key. Call :meth:`save` once the keys are computed.

    Args:
        index: the JSON file that remembers digests (put it in the cache folder).
        derived: more functions of a file's content worth remembering the same way (name ->
            function returning a string; the EEG plugin's: the files a BrainVision header names).
    """

    DIGEST = "blake2b"  # the index's name for file_digest: digests of another kind are never reused

    def __init__(self, index: str | os.PathLike, derived: dict[str, Callable[[Path], str]] | None = None):
        self.digests = FileDigests(Path(index), {self.DIGEST: file_digest, **(derived or {})})

    def digest(self, path: str | os.PathLike) -> str:
        """:func:`file_digest` of ``path``, read only when the file changed since it was last digested."""
        return self.digests(Path(path), self.DIGEST)

    def derived(self, path: str | os.PathLike, name: str) -> str:
        """``derived[name](path)``, computed once per version of the file."""
        return self.digests(Path(path), name)

    def contents(self, files: Iterable[str | os.PathLike]) -> str:
        """``name:digest`` of each of ``files``, joined by ``|``: their names and content, not their
        folder, for :func:`entry_key` beside the settings the entry depends on::

            key = entry_key(FORMAT_VERSION, keys.contents(files), settings_key)
        """
        return "|".join(f"{Path(f).name}:{self.digest(f)}" for f in files)

    def save(self) -> None:
        """Remember the digests computed since the last save (atomic; merged with other processes')."""
        self.digests.save()
