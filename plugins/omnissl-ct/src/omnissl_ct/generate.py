"""Write synthetic CT phantoms to a folder: ``python -m omnissl_ct.generate OUT --n 20``.

Each phantom becomes ``phantom_00000.nii.gz`` (or a DICOM series folder ``phantom_00000/``
with ``--format dicom``); ``labels.json`` maps each to its central lesion's morphology (solid, hollow, lobulated, mottled).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from omnissl_ct.phantom import LESIONS, make_phantom, write_dicom_series, write_nifti


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnissl_ct.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--n", type=int, default=20, help="number of phantoms")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 2.0), metavar=("SX", "SY", "SZ"))
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    labels = {}
    for i in range(args.n):
        phantom = make_phantom(rng, args.shape, args.spacing)
        name = f"phantom_{i:05d}"
        if args.format == "nifti":
            write_nifti(phantom, args.out / f"{name}.nii.gz")
            labels[f"{name}.nii.gz"] = LESIONS[phantom.label]
        else:
            write_dicom_series(phantom, args.out / name)
            labels[name] = LESIONS[phantom.label]
    (args.out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    print(f"wrote {args.n} phantoms ({args.format}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
