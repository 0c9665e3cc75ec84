"""3-D crops per second delivered to the training loop: omnissl-ct's cached pipeline
against the same MONAI transforms run uncached, on the same files, in one process.

Both sides read the same synthetic CT phantoms (NIfTI, written once to a temporary
folder) and run the same transforms: load, check, orient to RAS, resample to 1.5 mm,
crop to the body, HU window to [0, 1] (the deterministic part), then a random
``--crop``³ crop with flips and 90° rotations and 16³ patches (the random part).

* omnissl: ``omnissl_ct.CTVolumes`` (``monai.data.PersistentDataset`` keyed by file and
  settings) and ``CTModality.tokenize`` -- the deterministic part runs once per file, in
  epoch 1 (the cache is built on the way);
* MONAI uncached: ``monai.data.Dataset`` with the same deterministic transforms, then the
  same ``tokenize`` -- every epoch re-reads and re-samples every volume.

    python benchmarks/ct_crops.py                 # 12 volumes of 128x128x80 at 1x1x2 mm, 4 epochs
    python benchmarks/ct_crops.py --volumes 24 --epochs 3

The last line is the ratio of crops per second on the epochs after the first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from monai.data import Dataset

from omnissl_ct import CTModality, CTVolumes
from omnissl_ct.phantom import make_phantom, write_nifti
from omnissl_ct.preprocessing import PreprocessSettings, deterministic_transforms


def epoch(get, n: int, modality: CTModality, seed: int) -> float:
    """Crops per second over one pass: sample i of the epoch -> tokens of a random crop."""
    start = time.perf_counter()
    for i in range(n):
        modality.tokenize(get(i), np.random.default_rng([seed, i]))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 80))
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    settings = PreprocessSettings("ct", (1.5, 1.5, 1.5))
    modality = CTModality(crop_size=args.crop, patch_size=16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "volumes"
        rng = np.random.default_rng(0)
        for i in range(args.volumes):
            write_nifti(make_phantom(rng, args.shape, (1.0, 1.0, 2.0)), root / f"phantom_{i:03d}.nii.gz")
        print(f"{args.volumes} CT phantoms {tuple(args.shape)} at 1x1x2 mm -> 1.5 mm, {args.crop}^3 crops, "
              f"16^3 patches, {args.epochs} epochs")

        uncached = Dataset([{"image": str(p)} for p in sorted(root.glob("*.nii.gz"))],
                           transform=deterministic_transforms(settings))
        ours: list[float] = []
        theirs: list[float] = []
        cached = None
        for e in range(args.epochs):
            if cached is None:  # epoch 1 of omnissl includes building the cache
                start = time.perf_counter()
                cached = CTVolumes(root=str(root), spacing=list(settings.spacing), cache_dir=str(Path(tmp) / "cache"))
                build = time.perf_counter() - start
                first = epoch(cached.__getitem__, len(cached), modality, e)
                ours.append(len(cached) / (build + len(cached) / first))
            else:
                ours.append(epoch(cached.__getitem__, len(cached), modality, e))
            theirs.append(epoch(uncached.__getitem__, len(uncached), modality, e))
            print(f"epoch {e + 1}: omnissl cached {ours[-1]:8.1f} crops/s   monai uncached {theirs[-1]:8.1f} crops/s")
    later_ours, later_theirs = float(np.mean(ours[1:])), float(np.mean(theirs[1:]))
    print(f"epochs 2-{args.epochs}: omnissl cached {later_ours:.1f} crops/s, monai uncached {later_theirs:.1f} crops/s")
    print(f"ratio omnissl-cached/monai-uncached crops_per_s (epochs 2+): {later_ours / later_theirs:.1f}x")


if __name__ == "__main__":
    main()
