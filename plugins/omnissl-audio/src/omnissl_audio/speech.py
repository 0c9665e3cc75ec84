"""Real speech that installs from packages: espeak-ng's spoken digits and pyannote.audio's sample.

Nothing downloads. :class:`SpokenDigits` runs Debian's ``espeak-ng`` synthesiser (the ten
digits in several voices, speeds and pitches, with background noise so the task is not
trivial) and writes WAVs into the cache once, deterministically; :class:`PyannoteSpeakers`
cuts the 30 s two-speaker recording that ships inside the ``pyannote.audio`` wheel into
single-speaker windows labelled by speaker, following its ``sample.rttm`` turns.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import numpy as np

from omnissl.cache import atomic_folder, cache_folder
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_audio.cache import Clip
from omnissl_audio.datasets import AudioClips, AudioFolder
from omnissl_audio.frontend import FrontEnd, FrontEndKind

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-us+f2", "en+f4", "en-gb-x-rp+m3", "en+m7",
          "en-us+klatt", "en+croak")


def espeak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Synthesise ``word``: returns ((samples,) float32 in [-1, 1], sample rate)."""
    import soundfile as sf

    binary = shutil.which("espeak-ng")
    if binary is None:
        raise DataError("the spoken_digits data set needs the espeak-ng synthesiser, which is not installed: "
                        "run `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)")
    result = subprocess.run([binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                            capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise DataError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace').strip()}; "
                        f"list the voices with `espeak-ng --voices=en`")
    samples, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    return samples, rate


def render(word: np.ndarray, length: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Place ``word`` at a random offset in ``length`` samples of white noise at ``snr_db``."""
    word = word[:length]
    canvas = np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, length - len(word) + 1))
    canvas[offset:offset + len(word)] = word
    power = float(np.mean(word.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(length) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(canvas + noise, -1.0, 1.0).astype(np.float32)


class SpokenDigits(AudioFolder):
    """The digits "zero" to "nine" spoken by espeak-ng, labelled 0-9 (len(voices) x len(speeds)
    x len(pitches) clips per digit), each at a random offset in ``clip_seconds`` of white noise.
    Groups are the voices (``group_kind`` ``"speaker"``).

    The WAVs are written to ``<cache>/spoken_digits/<settings hash>/<digit>/`` on first use
    (espeak-ng's own 22,050 Hz, so loading resamples like a user's files would).

    Args:
        voices: espeak-ng voices, ``language[+variant]``.
        speeds: words per minute.
        pitches: 0-99.
        snr_db: [low, high] range of the signal-to-noise ratio drawn per clip.
        clip_seconds: clip length.
        seed: seed of offsets and noise.

    Other options: as :class:`~omnissl_audio.datasets.AudioFolder`.
    """

    def __init__(self, voices: list[str] = VOICES, speeds: Annotated[list[int], Range(ge=1)] = (120, 160, 200),
                 pitches: Annotated[list[int], Range(ge=0, le=99)] = (25, 50, 75),
                 snr_db: Annotated[list[float], Range(ascending=True)] = (0.0, 20.0),
                 clip_seconds: Annotated[float, Range(gt=0)] = 1.0,
                 seed: Annotated[int, Range(ge=0)] = 0, sample_rate: Annotated[int, Range(ge=1)] = 16000,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128,
                 frontend: FrontEndKind = "kaldi_fbank", frame_length_ms: Annotated[float, Range(gt=0)] = 25.0,
                 frame_shift_ms: Annotated[float, Range(gt=0)] = 10.0, mean: Annotated[float | None, Range()] = None,
                 std: Annotated[float | None, Range(gt=0)] = None,
                 cache_dir: str | None = None, strict: bool = False):
        settings = {"voices": list(voices), "speeds": list(speeds), "pitches": list(pitches),
                    "snr_db": list(snr_db), "clip_seconds": clip_seconds, "seed": seed}
        tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        root = cache_folder("audio", cache_dir) / "spoken_digits" / tag
        if not (root / "done").is_file():
            self._synthesise(root, settings)
        super().__init__(str(root), sample_rate, num_mel_bins, frontend, frame_length_ms, frame_shift_ms,
                         mean, std, cache_dir, strict)
        self.classes = list(DIGITS)  # folder names are "0".."9": labels are the digits themselves
        # Files are "<voice>-s<speed>-p<pitch>.wav": a voice is a speaker, whose clips a held-out split keeps together.
        self.groups = np.array([clip.path.stem.rsplit("-", 2)[0] for clip in self.clips])
        self.group_kind = "speaker"

    @staticmethod
    def _synthesise(root: Path, settings: dict) -> None:
        """Speak every clip into a temporary folder renamed to ``root`` (:func:`omnissl.cache.atomic_folder`):
        an interrupted run leaves no half set, and parallel runs never write into one."""
        import soundfile as sf

        if root.is_dir():
            shutil.rmtree(root)  # without its "done" file: a partial set written by an older version
        rng = np.random.default_rng(settings["seed"])
        with atomic_folder(root, "spoken-digit clips") as tmp:
            for label, word in enumerate(DIGITS):
                (tmp / str(label)).mkdir()
                for voice in settings["voices"]:
                    for speed in settings["speeds"]:
                        for pitch in settings["pitches"]:
                            samples, rate = espeak(word, voice, speed, pitch)
                            clip = render(samples, int(settings["clip_seconds"] * rate),
                                          float(rng.uniform(*settings["snr_db"])), rng)
                            name = f"{voice.replace('+', '_')}-s{speed}-p{pitch}.wav"
                            sf.write(tmp / str(label) / name, clip, rate, subtype="PCM_16")
            (tmp / "done").write_text(json.dumps(settings) + "\n")


def pyannote_sample() -> tuple[Path, Path]:
    """Paths of ``sample.wav`` and ``sample.rttm`` inside the installed pyannote.audio (not imported)."""
    spec = importlib.util.find_spec("pyannote.audio")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample" if spec else None
    if folder is None or not (folder / "sample.wav").is_file():
        raise DataError("the pyannote_speakers data set reads the sample recording shipped with pyannote.audio: "
                        "pip install --no-deps pyannote.audio")
    return folder / "sample.wav", folder / "sample.rttm"


def single_speaker_turns(rttm: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) intervals of an RTTM file during which exactly one speaker talks."""
    turns = []
    for line in rttm.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    edges = sorted({t for start, end, _ in turns for t in (start, end)})
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        talking = {who for start, end, who in turns if start <= a and b <= end}
        if len(talking) == 1:
            who = talking.pop()
            if out and out[-1][2] == who and abs(out[-1][1] - a) < 1e-9:
                out[-1] = (out[-1][0], b, who)
            else:
                out.append((a, b, who))
    return out


class PyannoteSpeakers(AudioClips):
    """Windows of pyannote.audio's two-speaker sample, labelled by who speaks (speaker ID probe).

    The windows of one single-speaker turn overlap (``hop_seconds`` < ``window_seconds``) and
    share one utterance, so the turn is their group (``group_kind`` ``"turn"``): a split by
    turn scores the speaker probe on utterances it was not fitted on, never on a window that
    overlaps one it was. The whole recording is one file, too few to split by.

    Args:
        window_seconds: window length; only windows inside one speaker's turn are kept.
        hop_seconds: step between windows.

    Other options: as :class:`~omnissl_audio.datasets.AudioFolder`.
    """

    def __init__(self, window_seconds: Annotated[float, Range(gt=0)] = 1.0,
                 hop_seconds: Annotated[float, Range(gt=0)] = 0.25, sample_rate: Annotated[int, Range(ge=1)] = 16000,
                 num_mel_bins: Annotated[int, Range(ge=1)] = 128, frontend: FrontEndKind = "kaldi_fbank",
                 frame_length_ms: Annotated[float, Range(gt=0)] = 25.0,
                 frame_shift_ms: Annotated[float, Range(gt=0)] = 10.0, mean: Annotated[float | None, Range()] = None,
                 std: Annotated[float | None, Range(gt=0)] = None,
                 cache_dir: str | None = None, strict: bool = False):
        wav, rttm = pyannote_sample()
        clips, labels, turns = [], [], []
        for start, end, who in single_speaker_turns(rttm):
            t = start
            while t + window_seconds <= end + 1e-9:
                clips.append(Clip(wav, round(t, 4), round(t + window_seconds, 4)))
                labels.append(who)
                turns.append(f"{wav.name} [{start:.2f}s, {end:.2f}s)")
                t += hop_seconds
        super().__init__(clips, labels, FrontEnd(sample_rate, num_mel_bins, frame_length_ms, frame_shift_ms,
                                                 frontend), mean, std, cache_dir, strict, where=str(wav),
                         groups=turns, group_kind="turn")
