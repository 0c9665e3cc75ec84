"""Folders, manifests, the cache, bad input, and the two real data sets that install from packages."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

import omnissl.cache as core_cache
import omnissl_audio.cache as cache_module
from omnissl.errors import DataError
from omnissl_audio import AudioFolder, AudioManifest, PyannoteSpeakers, SpokenDigits
from omnissl_audio.speech import single_speaker_turns, pyannote_sample


def class_folder(tmp_path: Path, alsa_files: list[Path]) -> Path:
    """alsa-utils' recordings in two class folders: front/ and rear/."""
    root = tmp_path / "alsa"
    for path in alsa_files:
        side = path.stem.split("_")[0].lower()
        if side in ("front", "rear"):
            (root / side).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / side / path.name)
    return root


def test_folder_labels_come_from_class_sub_folders(tmp_path: Path, alsa_files: list[Path], audio_cache: str) -> None:
    data = AudioFolder(str(class_folder(tmp_path, alsa_files)), num_mel_bins=64, cache_dir=audio_cache)
    assert data.classes == ["front", "rear"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    sample = data[0]
    assert sample["features"].dtype == np.float32 and sample["features"].shape[1] == 64
    assert sample["path"].endswith("Front_Center.wav")
    assert data.sample_kind == "clip" and data.group_kind == "file"
    assert data.groups.tolist() == [clip.path.as_posix() for clip in data.clips] and len(set(data.groups)) == 6
    every_frame = np.concatenate([data[i]["features"] for i in range(len(data))])
    assert abs(every_frame.mean()) < 1e-2 and abs(every_frame.std() - 1) < 1e-2  # normalised by its own stats


def test_warm_cache_never_decodes_again(tmp_path: Path, alsa_files: list[Path], audio_cache: str,
                                        monkeypatch: pytest.MonkeyPatch, write_wav: Callable) -> None:
    root = class_folder(tmp_path, alsa_files)
    first = AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache)
    decoded: list[Path] = []
    real_load = cache_module.load_audio

    def counting_load(path: Path, *args: object) -> object:
        decoded.append(path)
        return real_load(path, *args)

    monkeypatch.setattr(cache_module, "load_audio", counting_load)
    digested: list[str] = []
    real_digest = core_cache.file_digest
    monkeypatch.setattr(core_cache, "file_digest", lambda path: digested.append(path.name) or real_digest(path))
    again = AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache)
    assert decoded == [] and again.cache.folder == first.cache.folder
    assert again.summary()["files"] == 6 and decoded == []  # the summary reads no audio either
    assert digested == []  # unchanged files: their digests come from the stat index, no audio is read
    np.testing.assert_array_equal(again[3]["features"], first[3]["features"])
    shipped = pickle.dumps(again)  # what a "spawn" DataLoader worker receives: no frames, just the cache path
    assert len(shipped) < 20_000 < again.cache.features.nbytes
    np.testing.assert_array_equal(pickle.loads(shipped)[3]["features"], first[3]["features"])
    stats = json.loads((again.cache.folder / "stats.json").read_text())
    assert stats["num_clips"] == 6 and stats["mean"] == pytest.approx(again.mean)
    # Other front-end settings, or a file whose content changed, give another cache entry.
    AudioFolder(str(root), num_mel_bins=80, cache_dir=audio_cache)
    assert len(decoded) == 6
    write_wav(root / "front" / "Front_Center.wav", np.zeros(16000), 16000)
    with pytest.warns(UserWarning, match="silent"):
        changed = AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache)
    assert len(decoded) == 12 and changed.cache.folder != first.cache.folder
    assert digested == ["Front_Center.wav"]  # only the rewritten file was read to key the cache


def test_manifest_with_sections_and_labels(tmp_path: Path, audio_cache: str) -> None:
    wav, rttm = pyannote_sample()
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label,start,end\n"
                        f"{wav},speaker90,10.6,11.6\n"
                        f"{wav},speaker91,22.0,23.5\n"
                        f"{wav},speaker90,28.0,\n")
    data = AudioManifest(str(manifest), num_mel_bins=64, cache_dir=audio_cache)
    assert data.classes == ["speaker90", "speaker91"] and data.labels.tolist() == [0, 1, 0]
    assert [data[i]["features"].shape[0] for i in range(3)] == [98, 148, 198]  # 1 s, 1.5 s, 2 s to the end
    assert data.groups.tolist() == [str(wav)] * 3 and data.group_kind == "file"  # sections of one file
    assert data.summary()["files"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.wav,a\n")
    with pytest.raises(DataError, match="no column 'path' \\(data.path_column\\); its columns are 'file', 'label'"):
        AudioManifest(str(bad), cache_dir=audio_cache)


def test_manifest_columns_are_named_by_the_recipe(tmp_path: Path, alsa_files: list[Path], audio_cache: str) -> None:
    """A table as a study keeps it (Excel's UTF-8 with a byte-order mark): its own column names, a
    speaker per clip, one clip whose diagnosis is not known yet."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    rows = []
    for i, path in enumerate(alsa_files[:6]):
        shutil.copy(path, folder / path.name)
        diagnosis = "" if i == 5 else ("healthy", "dysarthria")[i % 2]
        rows.append(f"recordings/{path.name},{diagnosis},spk{i // 2}")
    manifest = tmp_path / "study.csv"
    manifest.write_text("audio_file,diagnosis,speaker_id\n" + "\n".join(rows) + "\n", encoding="utf-8-sig")
    data = AudioManifest(str(manifest), label_column="diagnosis", group_column="speaker_id", path_column="audio_file",
                         num_mel_bins=64, cache_dir=audio_cache)
    assert data.classes == ["dysarthria", "healthy"]
    np.testing.assert_array_equal(data.labels, [1, 0, 1, 0, 1, np.nan])  # the unknown one is unlabelled, not dropped
    assert data.groups.tolist() == ["spk0", "spk0", "spk1", "spk1", "spk2", "spk2"]
    assert data.group_kind == "speaker_id" and data.sample_kind == "clip"
    assert data.summary()["files"] == 6
    for option, column in (("label_column", "label"), ("group_column", "speaker"), ("path_column", "path")):
        options = {"path_column": "audio_file", option: column}
        if option == "label_column":
            options["label_column"] = "diagnosis "  # a stray space: no such column
        with pytest.raises(DataError, match=rf"study.csv has no column .*\(data.{option}\); its columns are "
                                            rf"'audio_file', 'diagnosis', 'speaker_id'"):
            AudioManifest(str(manifest), num_mel_bins=64, cache_dir=audio_cache, **options)
    unlabelled = AudioManifest(str(manifest), path_column="audio_file", num_mel_bins=64, cache_dir=audio_cache)
    assert unlabelled.labels is None  # no 'label' column and none named: an unlabelled set
    manifest.write_text("audio_file,speaker_id\nrecordings/Front_Left.wav,\n")
    with pytest.raises(DataError, match="study.csv, line 2: the group column 'speaker_id' is empty"):
        AudioManifest(str(manifest), path_column="audio_file", group_column="speaker_id", cache_dir=audio_cache)


def test_broken_files_are_skipped_named_and_counted(tmp_path: Path, alsa_files: list[Path], audio_cache: str,
                                                   write_wav: Callable) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    for path in alsa_files[:3]:
        shutil.copy(path, root / path.name)
    (root / "truncated.wav").write_bytes(alsa_files[3].read_bytes()[:30])  # header cut inside the fmt chunk
    (root / "notes.flac").write_text("not audio at all")
    write_wav(root / "click.wav", np.ones(100) * 0.5, 16000)  # shorter than one 25 ms window
    with pytest.warns(UserWarning) as caught:
        data = AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache)
    messages = " ".join(str(w.message) for w in caught)
    assert "truncated.wav" in messages and "notes.flac" in messages and "click.wav" in messages
    assert "skipped 3 of 6 clips" in messages
    assert len(data) == 3 and len(data.skipped) == 3
    assert data.summary()["files"] == 3 and len(data.groups) == 3  # the files used, not the files found
    with pytest.raises(DataError, match="click.wav: 100 samples, shorter than one 25 ms"):  # first in order
        AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache + "-strict", strict=True)


def test_silent_clips_are_kept_reported_and_left_out_of_the_statistics(tmp_path: Path, alsa_files: list[Path],
                                                                       audio_cache: str, write_wav: Callable) -> None:
    root = tmp_path / "with-silence"
    root.mkdir()
    shutil.copy(alsa_files[0], root / alsa_files[0].name)
    write_wav(root / "silence.wav", np.zeros(16000), 16000)
    with pytest.warns(UserWarning, match="1 silent clip.*silence.wav"):
        data = AudioFolder(str(root), num_mel_bins=64, cache_dir=audio_cache)
    assert len(data) == 2 and len(data.silent) == 1
    summary = data.summary()
    assert summary["files"] == 2 and summary["silent clips (kept, not in mean/std)"] == 1
    assert summary["audio minutes"] == pytest.approx((sf.info(alsa_files[0]).duration + 1) / 60, abs=0.05)
    speech = data[0]["features"]
    assert abs(speech.mean()) < 1e-2 and np.isfinite(data[1]["features"]).all()


def test_nothing_readable_is_a_clear_error(tmp_path: Path, audio_cache: str) -> None:
    root = tmp_path / "junk"
    root.mkdir()
    (root / "a.wav").write_text("hello")
    (root / "b.ogg").write_bytes(b"\x00" * 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no readable audio.*2 of 2 clips failed"):
            AudioFolder(str(root), cache_dir=audio_cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files found"):
        AudioFolder(str(tmp_path / "empty"), cache_dir=audio_cache)
    with pytest.raises(DataError, match="not a folder"):
        AudioFolder(str(tmp_path / "missing"), cache_dir=audio_cache)


def test_spoken_digits_are_synthesised_once_and_deterministically(tmp_path: Path) -> None:
    options = dict(voices=["en-us", "en+f4"], speeds=[150], pitches=[40], num_mel_bins=64)
    first = SpokenDigits(cache_dir=str(tmp_path / "a"), **options)
    second = SpokenDigits(cache_dir=str(tmp_path / "b"), **options)
    assert len(first) == 20 and first.classes[7] == "seven"
    assert sorted(first.labels.tolist()) == sorted(list(range(10)) * 2)
    np.testing.assert_array_equal(first[13]["features"], second[13]["features"])
    assert first[0]["features"].shape == (98, 64)  # 1 s clips
    assert first.group_kind == "speaker" and sorted(set(first.groups)) == ["en-us", "en_f4"]  # voices, not files
    assert [int((first.groups == voice).sum()) for voice in ("en-us", "en_f4")] == [10, 10]


def test_spoken_digits_without_espeak_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        SpokenDigits(voices=["en"], speeds=[150], pitches=[50], cache_dir=str(tmp_path))


def test_pyannote_sample_gives_single_speaker_windows(audio_cache: str) -> None:
    _, rttm = pyannote_sample()
    turns = single_speaker_turns(rttm)
    assert all(a < b for a, b, _ in turns)
    assert (18.05, 18.15, "speaker90") in [(round(a, 2), round(b, 2), w) for a, b, w in turns]  # overlap removed
    data = PyannoteSpeakers(num_mel_bins=64, cache_dir=audio_cache)
    assert data.classes == ["speaker90", "speaker91"]
    assert len(data) == len(data.labels) > 40 and min(np.bincount(data.labels)) > 15
    for clip in data.clips:
        start, end = clip.start, clip.end
        assert any(a - 1e-6 <= start and end <= b + 1e-6 for a, b, _ in turns)
    # Overlapping windows of one turn form a group: six turns hold at least one 1 s window.
    assert data.group_kind == "turn" and len(set(data.groups)) == 6
    named = {f"sample.wav [{a:.2f}s, {b:.2f}s)": (a, b, who) for a, b, who in turns}
    for clip, group, label in zip(data.clips, data.groups, data.labels):
        a, b, who = named[group]
        assert a - 1e-6 <= clip.start and clip.end <= b + 1e-6 and data.classes[label] == who
    assert data.summary()["files"] == 1 and data.sample_kind == "clip"
