"""omnissl.digests.FileDigests: a file is hashed once per version; the index survives processes."""

import json
import os
from pathlib import Path

from omnissl.digests import FileDigests


def counting(calls: list[str]):
    def digest(path: Path) -> str:
        calls.append(path.name)
        return path.read_bytes().hex()

    return digest


def test_a_file_is_hashed_once_per_version(tmp_path: Path):
    calls: list[str] = []
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"\x01\x02")
    b.write_bytes(b"\x03")
    index = tmp_path / "cache" / "digests.json"
    first = FileDigests(index, {"hex": counting(calls)})
    assert (first(a), first(b), first(a)) == ("0102", "03", "0102")
    assert calls == ["a.bin", "b.bin"]
    first.save()
    again = FileDigests(index, {"hex": counting(calls)})  # a later start
    assert again(a) == "0102" and calls == ["a.bin", "b.bin"]  # from the index: not read
    st = a.stat()
    a.write_bytes(b"\x09\x09")  # same size, and the modification time put back (cp -p)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again(a) == "0909" and calls[-1] == "a.bin"  # the change time moved: hashed again
    other = FileDigests(index, {"hex": counting([]), "other": counting(calls)})  # another function
    other(b, "other")  # its own entries
    assert calls[-1] == "b.bin"


def test_saves_merge_with_another_process(tmp_path: Path):
    index = tmp_path / "digests.json"
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    one, two = FileDigests(index, {"hex": counting([])}), FileDigests(index, {"hex": counting([])})
    one(tmp_path / "a")
    two(tmp_path / "b")
    one.save()
    two.save()  # read the index one wrote, then added its own
    assert len(json.loads(index.read_text())) == 2
    index.write_text("{cut sho")  # a torn or foreign file is not trusted, only rebuilt
    calls: list[str] = []
    assert FileDigests(index, {"hex": counting(calls)})(tmp_path / "a") == "61" and calls == ["a"]
