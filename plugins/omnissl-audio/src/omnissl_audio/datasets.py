"""Audio data sets: a folder of files (class sub-folders become labels) or a CSV manifest.

Both list :class:`~omnissl_audio.cache.Clip` s and hand them to :class:`AudioClips`,
which builds or opens the feature cache and serves normalised log-mels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np

from omnissl.cache import cache_folder
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_audio.cache import Clip, FeatureCache
from omnissl_audio.decode import EXTENSIONS
from omnissl_audio.frontend import FrontEnd, FrontEndKind

STATS_FILE = "audio_stats.json"  # the run file of a run on clips: the normalisation its inputs had


class AudioClips:
    """Clips with optional string labels -> cached, normalised log-mel features.

    Samples are ``{"features": (frames, num_mel_bins) float32, "path": str}``, normalised as
    ``(log_mel - mean) / std`` with the data set's own mean/std (computed once over every frame
    of the non-silent clips and stored in the cache's ``stats.json``), or with fixed values
    (AudioMAE's AudioSet statistics, say) when ``mean`` and ``std`` are given.

    ``labels`` are class indices into ``classes`` (int64), or float with NaN for the clips
    given no label when only some are; ``groups`` name the unit each clip belongs to (its source
    file unless the data set says otherwise), which a held-out split keeps on one side.

    Args:
        clips: what to read.
        labels: one class name per clip ("" or None: that clip is unlabelled), or None for an
            unlabelled set.
        frontend: the log-mel settings.
        mean, std: fixed normalisation; None computes it from the data.
        cache_dir: root of the feature cache (None: ``$OMNISSL_CACHE/audio``, see :mod:`omnissl.cache`).
        strict: stop at the first unreadable clip instead of skipping it.
        where: the data's location, for messages.
        groups: one group name per clip (None: the clip's source file).
        group_kind: what a group is (``"file"``, ``"speaker"``...).
    """

    sample_kind = "clip"

    def __init__(self, clips: Sequence[Clip], labels: Sequence[str | None] | None, frontend: FrontEnd,
                 mean: float | None, std: float | None, cache_dir: str | None, strict: bool, where: str,
                 groups: Sequence[str] | None = None, group_kind: str = "file"):
        if not clips:
            raise DataError(f"no audio files found in {where} (looked for {', '.join(EXTENSIONS)})")
        if (mean is None) != (std is None):
            raise DataError("data.mean and data.std must be given together (or neither, to compute them)")
        if mean is not None and not (math.isfinite(float(mean)) and math.isfinite(float(std)) and float(std) > 0):
            raise DataError(f"data.mean and data.std must be finite numbers and data.std positive, got {mean} "
                            f"and {std}")
        self.frontend = frontend
        self.cache = FeatureCache(clips, frontend, cache_folder("audio", cache_dir),
                                  strict=strict, where=where)
        kept = [int(i) for i in self.cache.kept]
        self.clips = [clips[i] for i in kept]
        self.skipped = self.cache.stats["skipped"]
        self.silent = self.cache.stats["silent"]
        self.mean = float(self.cache.stats["mean"] if mean is None else mean)
        self.std = float(self.cache.stats["std"] if std is None else std)
        self.task = "classification"
        self.groups = np.array([str(clips[i].path) if groups is None else str(groups[i]) for i in kept])
        self.group_kind = group_kind
        self.classes: list[str] = []
        self.labels: np.ndarray | None = None
        names = [labels[i] or None for i in kept] if labels is not None else []
        if any(names):
            self.classes = sorted({name for name in names if name})
            index = {name: i for i, name in enumerate(self.classes)}
            if all(names):
                self.labels = np.array([index[name] for name in names], dtype=np.int64)
            else:  # NaN marks the clips without a label: probes leave them out
                self.labels = np.array([index[name] if name else np.nan for name in names], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.cache)

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary, from the cache index (no audio is read)."""
        seconds = int(self.cache.offsets[-1]) * self.frontend.frame_shift_ms / 1000
        return {"files": len({clip.path for clip in self.clips}), "audio minutes": round(seconds / 60, 1),
                "silent clips (kept, not in mean/std)": len(self.silent)}

    def normalisation(self) -> dict[str, Any]:
        """What a run needs to reproduce its inputs: front end, mean/std used, cache, and what was left out."""
        return {"mean": self.mean, "std": self.std, "frontend": asdict(self.frontend),
                "cache": str(self.cache.folder), "num_clips": len(self), "skipped": self.skipped,
                "silent": self.silent}

    def run_files(self) -> dict[str, Any]:
        """The run's log-mel normalisation and front-end settings, kept beside it as
        ``audio_stats.json`` (:func:`omnissl.datasets.write_run_files`; recorded in shards)."""
        return {STATS_FILE: self.normalisation()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        mel = np.asarray(self.cache.frames(index), dtype=np.float32)  # [frames, mels]
        return {"features": (mel - self.mean) / self.std, "path": self.clips[index].describe()}


class AudioFolder(AudioClips):
    """Every WAV, FLAC and OGG file under ``root`` (recursive). When every file sits in a
    sub-folder of ``root``, the sub-folder's name is its label. Each clip is a whole file,
    which is also its group (``group_kind`` ``"file"``).

    Args:
        root: the folder.
        sample_rate: rate the audio is resampled to (Hz).
        num_mel_bins: mel filters (set ``modality.num_mel_bins`` to the same).
        frontend: ``"kaldi_fbank"`` (AudioMAE's Kaldi filter banks) or ``"melspectrogram"`` (torchaudio's).
        frame_length_ms: analysis window.
        frame_shift_ms: hop between frames.
        mean, std: fixed normalisation of the log-mels (None: the data set's own, computed once).
        cache_dir: feature cache root (None: ``$OMNISSL_CACHE/audio``, else ``omnissl/audio`` in the user's
            cache folder, ``~/.cache`` on Linux).
        strict: unreadable clips are fatal instead of skipped with a warning.
    """

    def __init__(self, root: str, sample_rate: Annotated[int, Range(ge=1)] = 16000,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128,
                 frontend: FrontEndKind = "kaldi_fbank", frame_length_ms: Annotated[float, Range(gt=0)] = 25.0,
                 frame_shift_ms: Annotated[float, Range(gt=0)] = 10.0, mean: Annotated[float | None, Range()] = None,
                 std: Annotated[float | None, Range(gt=0)] = None,
                 cache_dir: str | None = None, strict: bool = False):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root {folder} is not a folder; point it at a folder of audio files")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        parts = [p.relative_to(folder).parts for p in files]
        labels = [part[0] for part in parts] if parts and all(len(part) > 1 for part in parts) else None
        super().__init__([Clip(p) for p in files], labels,
                         FrontEnd(sample_rate, num_mel_bins, frame_length_ms, frame_shift_ms, frontend),
                         mean, std, cache_dir, strict, where=str(folder))


class AudioManifest(AudioClips):
    """Clips listed in a CSV file with a header: a path column (relative to the CSV's folder or
    absolute), and optional label, group, ``start`` and ``end`` (seconds) columns.

    The recipe names the columns (``label_column: diagnosis``); a named column the file lacks
    is a :class:`DataError` listing the columns it has, except the default ``label``, whose
    absence means an unlabelled set. Rows with an empty label cell are unlabelled (NaN) while
    the others keep theirs. Groups are the group column's values when one is named, else each
    clip's file (several sections of one recording stay on one side of a held-out split).

    Args:
        manifest: the CSV file (UTF-8; Excel's byte-order mark is accepted).
        label_column: column holding each clip's class name (an empty cell: that clip is unlabelled; the
            default ``label`` may be absent, making the set unlabelled).
        group_column: column naming each clip's group (speaker, session...): a held-out split
            keeps a group on one side; None groups the clips by file.
        path_column: column holding each clip's audio file.

    Other options: as :class:`~omnissl_audio.datasets.AudioFolder`.
    """

    def __init__(self, manifest: str, label_column: str = "label", group_column: str | None = None,
                 path_column: str = "path", sample_rate: Annotated[int, Range(ge=1)] = 16000,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128,
                 frontend: FrontEndKind = "kaldi_fbank", frame_length_ms: Annotated[float, Range(gt=0)] = 25.0,
                 frame_shift_ms: Annotated[float, Range(gt=0)] = 10.0, mean: Annotated[float | None, Range()] = None,
                 std: Annotated[float | None, Range(gt=0)] = None,
                 cache_dir: str | None = None, strict: bool = False):
        csv_path = Path(manifest).expanduser()
        if not csv_path.is_file():
            raise DataError(f"data.manifest {csv_path} does not exist")
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        wanted = {"path_column": path_column, "group_column": group_column}
        if label_column != "label":  # the default may be absent: the clips are then unlabelled
            wanted["label_column"] = label_column
        for option, column in wanted.items():
            if column is not None and column not in columns:
                raise DataError(f"{csv_path} has no column {column!r} (data.{option}); its columns are "
                                f"{', '.join(map(repr, columns)) or '(none: the file is empty)'}. Set data.{option} "
                                f"to one of them.")
        clips, labels, groups = [], [], []
        for line, row in enumerate(rows, start=2):
            try:
                start = float(row["start"]) if row.get("start") else None
                end = float(row["end"]) if row.get("end") else None
            except ValueError as exc:
                raise DataError(f"{csv_path}, line {line}: start/end must be seconds: {exc}") from exc
            path = Path(row[path_column] or "").expanduser()
            clips.append(Clip(path if path.is_absolute() else csv_path.parent / path, start, end))
            labels.append((row.get(label_column) or "").strip())
            if group_column is not None:
                group = (row[group_column] or "").strip()
                if not group:
                    raise DataError(f"{csv_path}, line {line}: the group column {group_column!r} is empty; every "
                                    f"clip needs a group (or leave data.group_column unset to group by file)")
                groups.append(group)
        super().__init__(clips, labels if any(labels) else None,
                         FrontEnd(sample_rate, num_mel_bins, frame_length_ms, frame_shift_ms, frontend),
                         mean, std, cache_dir, strict, where=str(csv_path),
                         groups=groups if group_column is not None else None, group_kind=group_column or "file")
