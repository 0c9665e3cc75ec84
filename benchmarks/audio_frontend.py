"""Clips per second delivered to the training loop: omnissl-audio's cached front end against
AudioMAE's per-clip front end, same files and settings, one process.

AudioMAE's data loader (like AST's) decodes each clip, computes a 128-bin Kaldi filter bank
(25 ms / 10 ms, Hanning window, HTK-compatible) with ``torchaudio.compliance.kaldi.fbank``,
pads or crops it to 1024 frames and normalises it, inside ``__getitem__``, every epoch.
omnissl decodes and computes the same filter bank once, stores it in a float16 memmap, and
later epochs only slice it, normalise, and cut the (time, frequency) patches.

Inputs: ``--clips`` WAV files of ``--seconds`` of real speech at 16 kHz, cut from the
recording that ships with pyannote.audio (``pip install --no-deps pyannote.audio``).
Both sides use a ``DataLoader`` with batch 16 and ``--workers`` workers over the same files,
and torch runs ``--threads`` threads (default 1, as inside every DataLoader worker process;
on a loaded machine extra intra-op threads mostly spin). Sides alternate epoch by epoch so
drifts in machine load hit both. Epoch 1 of omnissl includes building its cache; the
headline is the median of the epochs after it.

    python benchmarks/audio_frontend.py
    python benchmarks/audio_frontend.py --clips 256 --epochs 3 --workers 2

The last line is the omnissl/AudioMAE clips-per-second ratio after the first epoch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

RATE, BINS, TARGET_FRAMES, BATCH = 16000, 128, 1024, 16
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974  # AudioMAE's normalisation constants


class AudioMAEStyleDataset(Dataset):
    """The per-clip front end of AudioMAE's ``AudiosetDataset.__getitem__`` (without mixup/SpecAugment)."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from torchaudio.compliance import kaldi

        samples, rate = sf.read(self.files[index], dtype="float32")
        waveform = torch.from_numpy(samples)[None]
        waveform = waveform - waveform.mean()
        fbank = kaldi.fbank(waveform, htk_compat=True, sample_frequency=rate, use_energy=False,
                            window_type="hanning", num_mel_bins=BINS, dither=0.0, frame_shift=10)
        missing = TARGET_FRAMES - fbank.shape[0]
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, missing)) if missing > 0 else fbank[:TARGET_FRAMES]
        return (fbank - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` clips of ``seconds`` from pyannote.audio's sample, at staggered offsets (wrapping around)."""
    from omnissl_audio.speech import pyannote_sample

    speech, rate = sf.read(pyannote_sample()[0], dtype="float32")
    assert rate == RATE
    length = int(seconds * rate)
    tiled = np.concatenate([speech] * (1 + length // len(speech) + 1))
    files = []
    for i in range(count):
        start = (i * 7919) % len(speech)
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, tiled[start:start + length], rate, subtype="PCM_16")
        files.append(path)
    return files


def epoch(loader: DataLoader) -> float:
    """Clips per second of one pass over ``loader``."""
    began, count = time.perf_counter(), 0
    for batch in loader:
        count += batch.batch_size if hasattr(batch, "batch_size") else len(batch)
    return count / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from omnissl.tokens import collate_tokens
    from omnissl.train.data import TokenDataset
    from omnissl_audio import AudioFolder, AudioModality

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        root.mkdir()
        files = write_clips(root, args.clips, args.seconds)
        print(f"{args.clips} clips of {args.seconds:g} s speech at 16 kHz; 128-bin Kaldi fbank, "
              f"{TARGET_FRAMES} frames; batch {BATCH}, {args.workers} workers, torch threads {torch.get_num_threads()}")

        peer = DataLoader(AudioMAEStyleDataset(files), batch_size=BATCH, num_workers=args.workers)
        modality = AudioModality(target_frames=TARGET_FRAMES, num_mel_bins=BINS, patch_size=[16, 16])

        def ours_loader() -> DataLoader:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = AudioFolder(str(root), num_mel_bins=BINS, cache_dir=str(Path(tmp) / "cache"))
            tokens = TokenDataset(data, modality)
            batches = [[(i, None) for i in range(s, min(s + BATCH, len(data)))] for s in range(0, len(data), BATCH)]
            return DataLoader(tokens, batch_sampler=batches, collate_fn=collate_tokens, num_workers=args.workers)

        rows: dict[str, list[float]] = {"audiomae": [], "omnissl": []}
        for e in range(args.epochs):  # alternate the sides so machine load drifts hit both
            rows["audiomae"].append(epoch(peer))
            began = time.perf_counter()
            loader = ours_loader()  # epoch 1: decodes and caches; later epochs: opens the memmap
            first_count = len(loader.dataset)
            if e == 0:
                for _ in loader:
                    pass
                rows["omnissl"].append(first_count / (time.perf_counter() - began))
            else:
                rows["omnissl"].append(epoch(loader))
        for name, label in (("audiomae", "AudioMAE per-clip decode + kaldi.fbank"),
                            ("omnissl", "omnissl cached front end + patch tokens")):
            values = "  ".join(f"{v:8.1f}" for v in rows[name])
            print(f"{label:<42} clips/s by epoch: {values}")
        peer_later = statistics.median(rows["audiomae"][1:] or rows["audiomae"])
        ours_later = statistics.median(rows["omnissl"][1:] or rows["omnissl"])
        print(f"epoch 1 (omnissl builds its cache): {rows['omnissl'][0] / rows['audiomae'][0]:.2f}x")
        print(f"ratio omnissl/audiomae clips_per_s after the first epoch: {ours_later / peer_later:.1f}x")


if __name__ == "__main__":
    main()
