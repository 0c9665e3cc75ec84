"""Windows per second delivered to the training loop from a folder of EDF files:
omnissl-eeg (warm cache) against braindecode's fixed-length windowing, same files, same settings.

Both pipelines read the same EDF files, keep the EEG channels, band-pass 0.5-45 Hz,
notch 50 Hz, resample to 200 Hz, re-reference to the average, scale to microvolts and
cut 4 s windows with a 4 s stride. braindecode (Schirrmeister et al. 2017; its
``preprocess`` + ``create_fixed_length_windows`` over ``RawDataset``) keeps the
preprocessed recordings in memory and cuts windows on access; omnissl-eeg preprocesses
once into a memory-mapped cache. Each side is iterated through a torch DataLoader for
several epochs (batch 64, no workers, torch's default threads for both); the headline is
the median epoch after the first, when omnissl reads its warm cache. omnissl is timed three
ways: windows (the data set's batched read, stacked windows as braindecode's loader yields
them), tokens (tokenised and padded TokenBatches through the trainer's own sampler, data set
and collate: what the training loop takes, in microvolts as braindecode's windows), and
tokens + on_device (the division by the amplitude scale that the training step runs on its
device, here the CPU; braindecode users scale on the device too, as LaBraM does). The last
line, the headline, is the tokens ratio.

    python benchmarks/eeg_windows.py [--files 8] [--minutes 5] [--channels 32] [--epochs 11]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

CHANNELS_1020 = ["Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3",
                 "Cz", "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "PO4", "O1",
                 "Oz", "O2"]
SFREQ_IN, SFREQ, WINDOW = 256.0, 200.0, 4.0
L_FREQ, H_FREQ, NOTCH = 0.5, 45.0, 50.0
BATCH = 64


def write_edf_folder(folder: Path, files: int, minutes: float, channels: int) -> list[Path]:
    """EDF files of pink-ish noise with alpha bursts (realistic spectra and amplitudes, 10-50 uV)."""
    import mne

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * SFREQ_IN)
    paths = []
    for f in range(files):
        white = rng.standard_normal((channels, n))
        spectrum = np.fft.rfft(white, axis=1) / np.sqrt(np.arange(n // 2 + 1) + 1.0)
        signal = np.fft.irfft(spectrum, n=n, axis=1)
        t = np.arange(n) / SFREQ_IN
        signal += 0.5 * np.sin(2 * np.pi * 10 * t) * (np.sin(2 * np.pi * 0.05 * t) > 0)
        signal *= 20e-6 / signal.std(axis=1, keepdims=True)
        info = mne.create_info(CHANNELS_1020[:channels], SFREQ_IN, "eeg")
        path = folder / f"sub-{f:02d}.edf"
        mne.export.export_raw(path, mne.io.RawArray(signal, info, verbose="error"), verbose="error")
        paths.append(path)
    return paths


def iterate(dataset, collate=None, batch_sampler=None, finish=None) -> tuple[int, float]:
    """(windows, seconds) for one pass of a DataLoader over ``dataset``; ``finish`` is applied
    to each batch in the timed loop."""
    if batch_sampler is not None:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=0)
    else:
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate, num_workers=0)
    count, start = 0, time.perf_counter()
    for batch in loader:
        if finish is not None:
            batch = finish(batch)
        count += (batch[0] if isinstance(batch, (list, tuple)) else batch.values).shape[0]
    return count, time.perf_counter() - start


def braindecode_windows(paths: list[Path]):
    import mne
    from braindecode.datasets import BaseConcatDataset, RawDataset
    from braindecode.preprocessing import Preprocessor, create_fixed_length_windows, preprocess

    raws = [mne.io.read_raw_edf(p, preload=False, verbose="error") for p in paths]
    concat = BaseConcatDataset([RawDataset(raw, {"file": str(p)}) for raw, p in zip(raws, paths)])
    preprocess(concat, [
        Preprocessor("pick_types", eeg=True, meg=False),
        Preprocessor("filter", l_freq=L_FREQ, h_freq=H_FREQ, verbose="error"),
        Preprocessor("notch_filter", freqs=[NOTCH], verbose="error"),
        Preprocessor("resample", sfreq=SFREQ, verbose="error"),
        Preprocessor("set_eeg_reference", ref_channels="average", verbose="error"),
        Preprocessor(lambda x: x * 1e6),  # volts -> microvolts
    ])
    size = int(WINDOW * SFREQ)
    return create_fixed_length_windows(concat, window_size_samples=size, window_stride_samples=size,
                                       drop_last_window=True, preload=False)


class Windows(torch.utils.data.Dataset):
    """omnissl's windows without tokens: the data set's batched read (``get_batch``), as the
    DataLoader's batched fetch (``__getitems__``) calls it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices):
        return torch.from_numpy(self.dataset.get_batch(sorted(indices))["signal"]), 0  # in uV, as braindecode


def _first(batch):
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=11, help="epochs per pipeline; the headline is the median of 2..N")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import mne

    mne.set_log_level("error")
    torch.manual_seed(0)
    from omnissl.train.data import SeededBatchSampler, TokenDataset
    from omnissl.tokens import collate_tokens
    from omnissl_eeg import EEGFolder, EEGModality

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "edf"
        folder.mkdir()
        paths = write_edf_folder(folder, args.files, args.minutes, args.channels)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} EDF files, {args.channels} channels, {args.minutes:g} min at {SFREQ_IN:g} Hz "
              f"({size_mb:.0f} MB); {WINDOW:g} s windows at {SFREQ:g} Hz, batch {BATCH}")

        start = time.perf_counter()
        bd = braindecode_windows(paths)
        bd_setup = time.perf_counter() - start
        options = dict(pick=["eeg"], l_freq=L_FREQ, h_freq=H_FREQ, notch=NOTCH, sfreq=SFREQ, reference="average",
                       window_seconds=WINDOW, reject=None, cache_dir=str(Path(tmp) / "cache"))
        start = time.perf_counter()
        EEGFolder(str(folder), **options)  # cold: read, preprocess, write the cache
        om_cold = time.perf_counter() - start
        start = time.perf_counter()
        om = EEGFolder(str(folder), **options)  # warm: memory-mapped, no raw file opened
        om_warm = time.perf_counter() - start
        assert len(om) == len(bd), (len(om), len(bd))
        a, b = np.asarray(om[5]["signal"]), np.asarray(bd[5][0])
        print(f"same windows: {len(om)} each; window 5 max |omnissl - braindecode| = {np.abs(a - b).max():.3g} uV "
              f"(std {b.std():.3g} uV)")
        print(f"setup: braindecode preprocess+windows {bd_setup:.2f} s | omnissl cold cache {om_cold:.2f} s, "
              f"warm open {om_warm:.3f} s")

        modality = EEGModality(sfreq=SFREQ, patch_seconds=1.0)
        tokens = TokenDataset(om, modality)
        rates = {}
        epoch = _one_epoch(SeededBatchSampler(range(len(om)), BATCH, 0))
        runs = {"braindecode": lambda: iterate(bd),
                "omnissl windows": lambda: iterate(Windows(om), _first),
                "omnissl tokens": lambda: iterate(tokens, collate_tokens, epoch),
                "+ on_device(cpu)": lambda: iterate(tokens, collate_tokens, epoch, modality.on_device)}
        for name, run in runs.items():
            count, seconds = run()
            rates[name, 1] = count / seconds
            print(f"{name:<16} epoch 1: {count} windows in {seconds:.3f} s = {count / seconds:,.0f} windows/s")
        # An epoch takes ~0.05 s: run the later epochs round-robin (so a burst of load on the
        # machine hits every pipeline alike) and take each pipeline's median.
        later = {name: [] for name in runs}
        for _ in range(args.epochs - 1):
            for name, run in runs.items():
                later[name].append(run())
        for name, results in later.items():
            count, seconds = sorted(results, key=lambda r: r[1])[len(results) // 2]
            rates[name, 2] = count / seconds
            print(f"{name:<16} epochs 2-{args.epochs} (median): {count} windows in {seconds:.3f} s = "
                  f"{count / seconds:,.0f} windows/s")
        print(f"torch threads: {torch.get_num_threads()} (both pipelines)")
        print(f"ratio omnissl windows/braindecode windows_per_s (epochs 2+): "
              f"{rates['omnissl windows', 2] / rates['braindecode', 2]:.1f}x")
        print(f"ratio omnissl tokens + on_device on this CPU/braindecode windows_per_s (epochs 2+): "
              f"{rates['+ on_device(cpu)', 2] / rates['braindecode', 2]:.1f}x")
        print(f"ratio omnissl/braindecode windows_per_s (epochs 2+, omnissl delivering padded token batches): "
              f"{rates['omnissl tokens', 2] / rates['braindecode', 2]:.1f}x")


def _one_epoch(sampler):
    """The first ``per_epoch`` batches of the trainer's infinite sampler (one epoch)."""
    return [batch for batch, _ in zip(sampler, range(sampler.per_epoch))]


if __name__ == "__main__":
    main()
