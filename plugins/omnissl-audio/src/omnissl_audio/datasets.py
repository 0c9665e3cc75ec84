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

from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_audio.cache import Clip, FeatureCache, default_cache_root
from omnissl_audio.decode import EXTENSIONS
from omnissl_audio.frontend import FrontEnd, FrontEndKind


class AudioClips:
    """Clips with optional string labels -> cached, normalised log-mel features.

    Samples are ``{"features": (frames, num_mel_bins) float32, "path": str}``, normalised as
    ``(log_mel - mean) / std`` with the data set's own mean/std (computed once over every frame
    of the non-silent clips and stored in the cache's ``stats.json``), or with fixed values
    (AudioMAE's AudioSet statistics, say) when ``mean`` and ``std`` are given.

    Args:
        clips: what to read.
        labels: one class name per clip, or None for an unlabelled set.
        frontend: the log-mel settings.
        mean, std: fixed normalisation; None computes it from the data.
        cache_dir: root of the feature cache (default :func:`default_cache_root`).
        strict: stop at the first unreadable clip instead of skipping it.
        where: the data's location, for messages.
    """

    def __init__(self, clips: Sequence[Clip], labels: Sequence[str] | None, frontend: FrontEnd,
                 mean: float | None, std: float | None, cache_dir: str | None, strict: bool, where: str):
        if not clips:
            raise DataError(f"no audio files found in {where} (looked for {', '.join(EXTENSIONS)})")
        if (mean is None) != (std is None):
            raise DataError("data.mean and data.std must be given together (or neither, to compute them)")
        if mean is not None and not (math.isfinite(float(mean)) and math.isfinite(float(std)) and float(std) > 0):
            raise DataError(f"data.mean and data.std must be finite numbers and data.std positive, got {mean} "
                            f"and {std}")
        self.frontend = frontend
        self.cache = FeatureCache(clips, frontend, Path(cache_dir) if cache_dir else default_cache_root(),
                                  strict=strict, where=where)
        self.clips = [clips[int(i)] for i in self.cache.kept]
        self.skipped = self.cache.stats["skipped"]
        self.silent = self.cache.stats["silent"]
        self.mean = float(self.cache.stats["mean"] if mean is None else mean)
        self.std = float(self.cache.stats["std"] if std is None else std)
        self.task = "classification"
        self.classes: list[str] = []
        self.labels: np.ndarray | None = None
        if labels is not None:
            kept = [labels[int(i)] for i in self.cache.kept]
            self.classes = sorted(set(kept))
            self.labels = np.array([self.classes.index(name) for name in kept], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.cache)

    def normalisation(self) -> dict[str, Any]:
        """What a run needs to reproduce its inputs: front end, mean/std used, cache, and what was left out."""
        return {"mean": self.mean, "std": self.std, "frontend": asdict(self.frontend),
                "cache": str(self.cache.folder), "num_clips": len(self), "skipped": self.skipped,
                "silent": self.silent}

    def __getitem__(self, index: int) -> dict[str, Any]:
        mel = np.asarray(self.cache.frames(index), dtype=np.float32)  # [frames, mels]
        return {"features": (mel - self.mean) / self.std, "path": self.clips[index].describe()}


class AudioFolder(AudioClips):
    """Every WAV, FLAC and OGG file under ``root`` (recursive). When every file sits in a
    sub-folder of ``root``, the sub-folder's name is its label.

    Args:
        root: the folder.
        sample_rate: rate to resample to (Hz).
        num_mel_bins: mel filters.
        frontend: ``"kaldi_fbank"`` or ``"melspectrogram"``.
        frame_length_ms: analysis window.
        frame_shift_ms: hop between frames.
        mean, std: fixed normalisation (None: computed from the data).
        cache_dir: feature cache root.
        strict: unreadable files are fatal instead of skipped with a warning.
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
    """Clips listed in a CSV file with a header: ``path`` (relative to the CSV's folder or
    absolute), and optional ``label``, ``start`` and ``end`` (seconds) columns.

    Args: as :class:`AudioFolder`, with ``manifest`` the CSV file instead of ``root``.
    """

    def __init__(self, manifest: str, sample_rate: Annotated[int, Range(ge=1)] = 16000,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128,
                 frontend: FrontEndKind = "kaldi_fbank", frame_length_ms: Annotated[float, Range(gt=0)] = 25.0,
                 frame_shift_ms: Annotated[float, Range(gt=0)] = 10.0, mean: Annotated[float | None, Range()] = None,
                 std: Annotated[float | None, Range(gt=0)] = None,
                 cache_dir: str | None = None, strict: bool = False):
        csv_path = Path(manifest).expanduser()
        if not csv_path.is_file():
            raise DataError(f"data.manifest {csv_path} does not exist")
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "path" not in rows[0]:
            raise DataError(f"{csv_path}: the header must name a 'path' column (and optionally label, start, "
                            f"end); found {list(rows[0])}")
        clips, labels = [], []
        for line, row in enumerate(rows, start=2):
            try:
                start = float(row["start"]) if row.get("start") else None
                end = float(row["end"]) if row.get("end") else None
            except ValueError as exc:
                raise DataError(f"{csv_path}, line {line}: start/end must be seconds: {exc}") from exc
            path = Path(row["path"]).expanduser()
            clips.append(Clip(path if path.is_absolute() else csv_path.parent / path, start, end))
            labels.append(row.get("label") or "")
        has_labels = bool(labels) and all(labels)
        super().__init__(clips, labels if has_labels else None,
                         FrontEnd(sample_rate, num_mel_bins, frame_length_ms, frame_shift_ms, frontend),
                         mean, std, cache_dir, strict, where=str(csv_path))
