"""omnissl.cache: one cache root, atomic file and folder writes, content keys, no non-finite value."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import omnissl.cache as cache
from omnissl.cache import (ContentKeys, NonFiniteError, WriteError, atomic_file, atomic_folder, cache_folder,
                           cache_root, entry_key, require_finite, write_array, write_json, write_text)
from omnissl.errors import DataError, OmnisslError

ROOT = Path(__file__).resolve().parents[1]


def test_root_is_omnissl_cache_else_the_platform_cache_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMNISSL_CACHE", str(tmp_path / "chosen"))
    assert cache_root() == tmp_path / "chosen"
    assert cache_folder("eeg") == tmp_path / "chosen" / "eeg"
    monkeypatch.setenv("OMNISSL_CACHE", "~/elsewhere")
    assert cache_root() == tmp_path / "home" / "elsewhere"
    assert cache_folder("eeg", "~/mine") == tmp_path / "home" / "mine"  # a recipe's data.cache_dir wins

    monkeypatch.delenv("OMNISSL_CACHE")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "omnissl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid under the XDG specification: ignored
    assert cache_root() == tmp_path / "home" / ".cache" / "omnissl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_folder("audio") == tmp_path / "home" / ".cache" / "omnissl" / "audio"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cache_root() == tmp_path / "home" / "Library" / "Caches" / "omnissl"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert cache_root() == tmp_path / "local" / "omnissl"


def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "entry.bin"
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_file(target) as handle:
            handle.write(b"half of it")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary sibling

    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write(b"new, but not finished")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["entry.bin"]


def test_a_full_disk_is_a_write_error_that_says_so(tmp_path: Path):
    target = write_text(tmp_path / "weights.bin", "previous")
    with pytest.raises(WriteError, match=r"cannot write exported weights .*weights\.bin: no space left on its "
                                         r"disk; the previous exported weights there is intact") as caught:
        with atomic_file(target, "exported weights") as handle:
            handle.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value, OmnisslError) and isinstance(caught.value, OSError)  # the CLI prints it
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    # An input that cannot be read inside the block is the reader's error, not a write error.
    with pytest.raises(FileNotFoundError):
        with atomic_file(tmp_path / "out.bin") as handle:
            handle.write((tmp_path / "missing-input.wav").read_bytes())
    assert not (tmp_path / "out.bin").exists()


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from omnissl.cache import atomic_file, atomic_folder
    target = Path(sys.argv[1])
    if sys.argv[2] == "file":
        with atomic_file(target) as handle:
            handle.write(b"x" * 100_000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: no cleanup code runs
    else:
        with atomic_folder(target) as tmp:
            (tmp / "part-1").write_bytes(b"written")
            os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_a_writer_killed_mid_write_never_leaves_a_partial_entry(tmp_path: Path):
    def crash(target: Path, kind: str) -> None:
        result = subprocess.run([sys.executable, "-c", CRASH, str(target), kind], capture_output=True, text=True)
        assert result.returncode == -9, result.stderr

    target = write_text(tmp_path / "entry.bin", "old, whole")
    crash(target, "file")
    assert target.read_text() == "old, whole"  # the previous version, never a half-written one
    (leftover,) = [p for p in tmp_path.iterdir() if p != target]
    assert re.fullmatch(r"\.entry\.bin\.\d+-[0-9a-f]{8}\.tmp", leftover.name)  # hidden; never read as an entry
    write_text(target, "new")  # the next writer is not disturbed by it
    assert target.read_text() == "new"

    folder = tmp_path / "entry-folder"
    crash(folder, "folder")
    assert not folder.exists()
    with atomic_folder(folder) as fresh:
        (fresh / "part-1").write_bytes(b"complete")
    assert (folder / "part-1").read_bytes() == b"complete"


def test_a_folder_appears_whole_or_not_at_all(tmp_path: Path):
    folder = tmp_path / "cache" / "key123"
    with pytest.raises(KeyError):
        with atomic_folder(folder) as tmp:
            (tmp / "a.npy").write_bytes(b"1")
            raise KeyError("interrupted")
    assert list((tmp_path / "cache").iterdir()) == []

    with atomic_folder(folder) as tmp:
        (tmp / "a.npy").write_bytes(b"1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.json").write_text("{}")
        assert not folder.exists()  # nothing under the real name until the block ends
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == ["a.npy", "sub", "sub/b.json"]

    with atomic_folder(folder) as tmp:  # another process finishing the same entry second
        (tmp / "a.npy").write_bytes(b"2")
    assert (folder / "a.npy").read_bytes() == b"1"  # the first complete copy is kept
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["key123"]  # the second is discarded


def test_content_keys_follow_content_and_read_no_file_when_warm(tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    a, b = data / "a.edf", data / "b.edf"
    a.write_bytes(b"\x01" * 1000)
    b.write_bytes(b"\x02" * 1000)
    read: list[str] = []
    real = cache.file_digest
    monkeypatch.setattr(cache, "file_digest", lambda path: read.append(Path(path).name) or real(path))

    keys = ContentKeys(tmp_path / "cache" / "digests.json")
    first = entry_key(3, keys.contents([a, b]), "l_freq=1")
    assert read == ["a.edf", "b.edf"]
    assert entry_key(3, keys.contents([a, b]), "l_freq=2") != first  # settings are part of the key
    keys.save()

    warm = ContentKeys(tmp_path / "cache" / "digests.json")  # a later start
    assert entry_key(3, warm.contents([a, b]), "l_freq=1") == first and read == ["a.edf", "b.edf"]
    st = a.stat()
    a.write_bytes(b"\x01" * 999 + b"\x09")  # same size; modification time put back as cp -p would
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = entry_key(3, warm.contents([a, b]), "l_freq=1")
    assert changed != first and read[-1] == "a.edf"
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in (a, b):
        (moved / f.name).write_bytes(f.read_bytes())
    assert entry_key(3, warm.contents([moved / "a.edf", moved / "b.edf"]), "l_freq=1") == changed  # folder: no part


def test_non_finite_values_never_enter_a_cache(tmp_path: Path):
    windows = np.ones((4, 2, 8), dtype=np.float32)
    windows[2, 1, 5] = np.nan
    windows[3, 0, 0] = np.inf
    with pytest.raises(NonFiniteError, match=r"refusing to cache non-finite windows of rec\.edf: 2 of 64 values "
                                             r"are NaN or infinite, the first at index \(2, 1, 5\)") as caught:
        write_array(tmp_path / "w.npy", windows, "windows of rec.edf")
    assert isinstance(caught.value, DataError) and "skip or repair this input" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    write_array(tmp_path / "w.npy", np.nan_to_num(windows, posinf=0.0))
    assert np.load(tmp_path / "w.npy").shape == (4, 2, 8)
    require_finite(np.arange(5), "counts")  # integers are always finite

    labels = np.array([1.0, np.nan, 2.0])
    require_finite(labels, "labels", missing_ok=True)  # NaN: no label, allowed where it means that
    with pytest.raises(NonFiniteError, match=r"refusing to cache infinite labels: 1 of 3 values are infinite "
                                             r"\(NaN, meaning no value, is allowed there\)"):
        require_finite(np.array([1.0, -np.inf, np.nan]), "labels", missing_ok=True)

    with pytest.raises(NonFiniteError, match=r"refusing to write audio statistics .*stats\.json: it holds a NaN"):
        write_json(tmp_path / "stats.json", {"mean": float("nan"), "std": 1.0}, "audio statistics")
    assert not (tmp_path / "stats.json").exists()
    write_json(tmp_path / "stats.json", {"mean": 0.5, "std": 1.0}, indent=2)
    assert json.loads((tmp_path / "stats.json").read_text()) == {"mean": 0.5, "std": 1.0}


def test_ct_honours_omnissl_cache(tmp_path: Path, monkeypatch):
    """CT wrote to ~/.cache/omnissl/ct whatever OMNISSL_CACHE said (issue 17)."""
    pytest.importorskip("omnissl_ct")
    from omnissl_ct.datasets import CTPhantoms

    monkeypatch.setenv("OMNISSL_CACHE", str(tmp_path / "chosen"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    phantoms = CTPhantoms(n=2, shape=[16, 16, 16], real_volumes=False)
    assert phantoms.parts[0].folder.parent == tmp_path / "chosen" / "ct"
    assert all(Path(s.path).is_relative_to(tmp_path / "chosen" / "ct") for s in phantoms.parts[0].sources)
    assert not (tmp_path / "home").exists()


def test_every_plugin_caches_through_omnissl_cache():
    """One copy of the cache root and of atomic writes: plugin code neither reads OMNISSL_CACHE nor
    renames temporary files into place itself."""
    own_copies = re.compile(r"[\"']OMNISSL_CACHE[\"']|os\.replace\(|os\.rename\(|\btempfile\b|XDG_CACHE_HOME")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted(ROOT.glob("plugins/*/src/**/*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if own_copies.search(line)]
    assert found == [], "use omnissl.cache instead:\n" + "\n".join(found)
