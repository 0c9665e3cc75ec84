"""The on-disk feature cache: every clip decoded and turned into log-mels once.

One cache folder per (front-end settings, clip list with file contents) holds
``features.f16`` (all clips' frames end to end, float16, read through ``np.memmap``),
``index.npz`` (frame offsets and which input clips were kept) and ``stats.json``
(data-set mean/std of the log-mels, counts, skipped files). The key hashes every file's
content once; later starts find the digests by the files' stat (:class:`omnissl.cache.ContentKeys`),
so a warm cache is opened without reading the audio, and ``__getitem__`` is a
memory-mapped slice: later epochs never decode, resample or compute a filter bank again.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnissl import skip_or_raise
from omnissl.cache import ContentKeys, atomic_folder, write_json
from omnissl.errors import DataError
from omnissl_audio.decode import BadAudio, load_audio
from omnissl_audio.frontend import FrontEnd

SILENCE_PEAK = 1e-4  # -80 dBFS: a clip whose loudest sample is below this is reported as silent
FEATURES, INDEX, STATS = "features.f16", "index.npz", "stats.json"
# Part of every cache key. 2: truncated and non-finite clips are skipped (caches built before may
# hold NaN features and statistics, so they are not reused).
CACHE_VERSION = 2


@dataclass(frozen=True)
class Clip:
    """One training example: a file, optionally a ``[start, end)`` section of it in seconds."""

    path: Path
    start: float | None = None
    end: float | None = None

    def describe(self) -> str:
        if self.start is None and self.end is None:
            return str(self.path)
        return f"{self.path} [{self.start or 0:g}s, {'end' if self.end is None else f'{self.end:g}s'})"


def cache_key(clips: Sequence[Clip], frontend: FrontEnd, digest: Callable[[Path], str]) -> str:
    """Hash of the front-end settings and every clip's file content (``digest``: a function of
    the file's whole content, :meth:`omnissl.cache.ContentKeys.digest`) and section."""
    digests: dict[Path, str] = {}
    key = hashlib.sha256(f"v{CACHE_VERSION}|{frontend.key()}".encode())
    for clip in clips:
        if clip.path not in digests:
            try:
                digests[clip.path] = digest(clip.path)
            except OSError as exc:  # unreadable: it will be skipped (and named) when the cache is built
                digests[clip.path] = f"unreadable:{exc.errno}"
        key.update(f"{digests[clip.path]}|{clip.start}|{clip.end}\n".encode())
    return f"{frontend.key()}-{key.hexdigest()[:24]}"


class FeatureCache:
    """Log-mel features of a list of clips, built on first use and memory-mapped afterwards.

    Attributes:
        folder: the cache folder.
        kept: (K,) indices into the input ``clips`` of the clips that decoded.
        offsets: (K + 1,) frame offsets of each kept clip in ``features``.
        features: (total_frames, num_mel_bins) float16 memmap of un-normalised log-mels.
        stats: ``mean``/``std`` over all frames of non-silent clips, plus what was skipped.
    """

    def __init__(self, clips: Sequence[Clip], frontend: FrontEnd, root: Path, strict: bool = False,
                 where: str = "audio data"):
        # File digests are remembered by stat (omnissl.cache): a warm start reads no audio file.
        keys = ContentKeys(Path(root).expanduser() / "digests.json")
        self.folder = Path(root).expanduser() / cache_key(clips, frontend, keys.digest)
        keys.save()
        if not (self.folder / STATS).is_file():
            self._build(clips, frontend, strict, where)
        self.stats = json.loads((self.folder / STATS).read_text())
        index = np.load(self.folder / INDEX, allow_pickle=False)
        self.kept, self.offsets = index["kept"], index["offsets"]
        self.num_mel_bins = frontend.num_mel_bins
        self._features: np.memmap | None = None
        for path, reason in self.stats["skipped"]:
            warnings.warn(f"skipped {path}: {reason}")
        if self.stats["silent"]:
            warnings.warn(f"{len(self.stats['silent'])} silent clip(s) (peak below -80 dBFS) kept but left out of "
                          f"the mean/std: {', '.join(self.stats['silent'][:5])}")
        if self.stats["skipped"]:
            warnings.warn(f"skipped {len(self.stats['skipped'])} of {len(clips)} clips in {where}")

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def features(self) -> np.memmap:
        """(total_frames, num_mel_bins) float16, opened on first use in each process."""
        if self._features is None:
            self._features = np.memmap(self.folder / FEATURES, dtype=np.float16, mode="r",
                                       shape=(int(self.offsets[-1]), self.num_mel_bins))
        return self._features

    def __getstate__(self) -> dict:
        # DataLoader workers started with "spawn" receive a pickled copy: send the path, not the frames.
        return {**self.__dict__, "_features": None}

    def frames(self, i: int) -> np.ndarray:
        """(frames, num_mel_bins) float16 view of kept clip ``i``."""
        return self.features[self.offsets[i]:self.offsets[i + 1]]

    def _build(self, clips: Sequence[Clip], frontend: FrontEnd, strict: bool, where: str) -> None:
        """Decode every clip once, append its log-mels to one file, then move the folder into place.

        A clip whose samples or log-mels are not all finite (a NaN in a float WAV, or samples
        so loud that the power spectrum overflows) is skipped by name, so that no non-finite
        value reaches ``features.f16`` or the mean/std.
        """
        kept, offsets, skipped, silent = [], [0], [], []
        moments = RunningMoments()
        # Built in a temporary folder renamed into place (omnissl.cache): never half a cache; when
        # another process finishes the same cache first, its copy is kept.
        with atomic_folder(self.folder, "audio feature cache") as tmp:
            with open(tmp / FEATURES, "wb") as out:
                for i, clip in enumerate(clips):
                    # Skips are reported each time the cache is opened (warm too), so no warning here.
                    try:
                        waveform = load_audio(clip.path, frontend.sample_rate, clip.start, clip.end)
                    except BadAudio as exc:  # decodes, but truncated or with NaN/infinite samples
                        skip_or_raise(skipped, clip.describe(), str(exc), strict, cause=exc, warn=False)
                        continue
                    except Exception as exc:  # libsndfile raises several types for broken files
                        skip_or_raise(skipped, clip.describe(), f"cannot decode audio ({exc})", strict,
                                      cause=exc, warn=False)
                        continue
                    if waveform.numel() < frontend.window_samples:
                        reason = (f"{waveform.numel()} samples, shorter than one {frontend.frame_length_ms:g} ms "
                                  f"analysis window")
                        skip_or_raise(skipped, clip.describe(), reason, strict, warn=False)
                        continue
                    mel = frontend(waveform).numpy()  # [frames, mels]
                    stored = mel.astype(np.float16)
                    if not (np.isfinite(mel).all() and np.isfinite(stored).all()):
                        peak = float(waveform.abs().max())
                        reason = (f"its log-mel features are not finite (peak sample {peak:.3g}: float samples "
                                  f"should lie within [-1, 1])")
                        skip_or_raise(skipped, clip.describe(), reason, strict, warn=False)
                        continue
                    if float(waveform.abs().max()) < SILENCE_PEAK:
                        silent.append(clip.describe())
                    else:
                        moments.add(mel)
                    stored.tofile(out)
                    kept.append(i)
                    offsets.append(offsets[-1] + mel.shape[0])
            if not kept:
                raise DataError(f"no readable audio in {where}: {len(skipped)} of {len(clips)} clips failed "
                                f"(first: {skipped[0][0] if skipped else '-'}: {skipped[0][1] if skipped else '-'}). "
                                f"Check the files are WAV/FLAC/OGG that soundfile can open.")
            mean, std = moments.mean_std()
            np.savez(tmp / INDEX, kept=np.array(kept, dtype=np.int64), offsets=np.array(offsets, dtype=np.int64))
            # write_json refuses a non-finite statistic, even one a future bug would let through.
            write_json(tmp / STATS, {"mean": mean, "std": std, "num_clips": len(kept), "num_frames": offsets[-1],
                                     "skipped": skipped, "silent": silent}, "audio statistics", indent=2)


class RunningMoments:
    """Mean and standard deviation of every value of many arrays, one array at a time.

    Each array's own mean and sum of squared deviations are taken in float64 and merged with
    Chan et al.'s pairwise update, so neither a long data set (the sum of squares of millions
    of log-mels) nor loud clips lose precision the way ``E[x^2] - E[x]^2`` does. Arrays must be
    finite: :meth:`add` refuses one that is not, so a NaN can never reach the statistics.
    """

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        n = values.size
        if n == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        mean = float(values.mean())
        m2 = float(np.square(values - mean).sum())
        if not (math.isfinite(mean) and math.isfinite(m2)):
            raise ValueError("non-finite values cannot enter the statistics")
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def mean_std(self) -> tuple[float, float]:
        """(mean, std); (0, 1) without data, std 1 when every value is the same."""
        if not self.count:
            return 0.0, 1.0
        std = math.sqrt(max(self.m2 / self.count, 0.0))
        if not (math.isfinite(self.mean) and math.isfinite(std)):
            raise DataError(f"the data set's log-mel statistics are not finite (mean {self.mean}, std {std}); "
                            f"this is a bug: please report it")
        return self.mean, std if std > 0 else 1.0
