"""Read volumes through MONAI: NIfTI files and DICOM series (:mod:`omnissl_ct.catalog` finds them).

A *source* is one volume: a ``.nii``/``.nii.gz`` file, or a folder whose DICOM files
form one series (a folder of slices becomes one volume). DICOM slices are ordered by
their position along the slice normal (the geometric order DICOM defines; instance
numbers are often wrong in exported data), and a series with a missing or duplicated
slice is rejected rather than silently stacked with the wrong spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data import PydicomReader

from omnissl.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Relative deviation of one slice gap from the median that counts as a missing/duplicated slice.
GAP_TOLERANCE = 0.1


@dataclass(frozen=True)
class Source:
    """One volume to read: a NIfTI file or a DICOM series folder."""

    path: Path
    kind: str  # "nifti" or "dicom"

    def stamp(self) -> str:
        """Changes when the file (or any slice of the series) changes: part of the cache key.

        Size, modification and change time: a tool that restores the modification time after
        writing (``cp -p``, ``rsync -t``) still moves the change time, which only the kernel sets."""
        files = [self.path] if self.kind == "nifti" else sorted(p for p in self.path.iterdir() if p.is_file())
        stats = [(p.name, p.stat()) for p in files]
        return ";".join(f"{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" for name, st in stats)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (one series), sorted by name."""
    from pydicom.misc import is_dicom

    return sorted(p for p in folder.iterdir() if p.is_file() and not is_nifti(p) and is_dicom(str(p)))


def slice_positions(datasets: Sequence[Any]) -> np.ndarray:
    """Position of each slice along the slice normal (mm): the cross product of the
    ImageOrientationPatient row and column directions, dotted with ImagePositionPatient."""
    normals = []
    for ds in datasets:
        if not hasattr(ds, "ImagePositionPatient") or not hasattr(ds, "ImageOrientationPatient"):
            raise DataError("a slice has no ImagePositionPatient/ImageOrientationPatient, so the series "
                            "cannot be ordered in space")
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        normals.append(np.cross(orientation[:3], orientation[3:]))
    normal = normals[0]
    return np.array([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=np.float64)))
                     for ds in datasets])


def check_series_geometry(positions: np.ndarray) -> None:
    """Raise DataError when sorted slice positions show a duplicated or a missing slice."""
    if len(positions) < 2:
        raise DataError("the series has a single slice: a 2-D image, not a volume")
    gaps = np.diff(np.sort(positions))
    typical = float(np.median(gaps))
    if typical <= 0 or np.any(gaps < typical * GAP_TOLERANCE):
        raise DataError("two slices share one position: the series has a duplicated slice")
    odd = np.abs(gaps - typical) > GAP_TOLERANCE * typical
    if np.any(odd):
        where = int(np.argmax(odd))
        raise DataError(f"uneven slice spacing (gap {gaps[where]:.3g} mm after slice {where + 1}, "
                        f"typical {typical:.3g} mm): the series has a missing slice")


class PositionOrderedDicomReader(PydicomReader):
    """MONAI's PydicomReader, but slices stacked in order of position along the slice normal.

    MONAI stacks a series by InstanceNumber; we renumber the in-memory datasets by their
    geometric rank first (nothing is written back), and reject gaps and duplicates.
    """

    def _combine_dicom_series(self, data: Sequence[Any], filenames: Sequence[Any]) -> tuple[np.ndarray, dict]:
        positions = slice_positions(data)
        check_series_geometry(positions)
        for rank, index in enumerate(np.argsort(positions, kind="stable")):
            data[int(index)].InstanceNumber = rank + 1
        return super()._combine_dicom_series(data, filenames)

