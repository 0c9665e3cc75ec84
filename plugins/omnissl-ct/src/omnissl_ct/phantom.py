"""Synthetic CT phantoms: a field of view inside a body of soft tissue, with ellipsoidal
inserts of tissue-like Hounsfield units and one central lesion, written as real NIfTI
files or DICOM series.

Numerical phantoms are the field's standard way to test CT pipelines without patient
data (Shepp & Logan, "The Fourier reconstruction of a head section", IEEE TNS 1974;
the XCAT phantoms of Segars et al., Med. Phys. 2010). Each phantom has one large
*lesion* at the centre whose morphology (solid, hollow, lobulated, mottled) is the
phantom's label: an honest probe target, drawn by the generator and fully determined by
the voxels, which needs shape and texture to read, since the lesion's attenuation is
drawn independently of its type. Smaller distractor inserts of random tissue classes sit
elsewhere. A Gaussian point-spread function (partial volume) and correlated noise of a
level drawn per scan make the volumes look like reconstructed CT rather than cartoons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Bumped whenever make_phantom draws differently, so cached phantom sets are regenerated.
GENERATOR_VERSION = 2
AIR_HU = -1000.0
SOFT_TISSUE_HU = 40.0
FLUID_HU = 5.0
# Typical attenuation of the distractor inserts (HU; liver as in a contrast-enhanced
# portal-venous scan, brighter than unenhanced soft tissue).
TISSUES: tuple[tuple[str, float], ...] = (("lung", -800.0), ("fat", -100.0), ("liver", 120.0), ("bone", 700.0))
# Morphology of the central lesion, the phantom's label (its index here), after radiology's
# descriptors: solid and homogeneous; hollow (an enhancing wall around fluid, as a cyst or an
# abscess); lobulated (a cluster of round lobes); mottled (enhancing patches in soft tissue).
LESIONS: tuple[str, ...] = ("solid", "hollow", "lobulated", "mottled")
# An enhancing lesion's attenuation (HU), drawn per lesion whatever its type.
LESION_HU = (150.0, 300.0)


@dataclass
class Phantom:
    """One phantom volume.

    Attributes:
        hu: (X, Y, Z) float32 Hounsfield units, axes in RAS order.
        spacing: voxel size in mm along X, Y, Z.
        label: index into :data:`LESIONS` of the central lesion's morphology.
        lesion_hu: the lesion's attenuation, drawn independently of the label.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    label: int
    lesion_hu: float


def _ellipsoid(grid: Sequence[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean (X, Y, Z) mask of an axis-aligned ellipsoid (centre and radii in voxels)."""
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(field, sigma, mode="nearest")


def lesion_masks(kind: str, grid: Sequence[np.ndarray], centre: np.ndarray, radii: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(enhancing, fluid) boolean (X, Y, Z) masks of a lesion of morphology ``kind``.

    Args:
        kind: one of :data:`LESIONS`.
        grid: voxel index grids (``np.meshgrid(..., indexing="ij")``).
        centre: lesion centre in voxels.
        radii: outer radii in voxels.
        rng: source of the wall thickness, lobe placement and mottling.
    """
    outer = _ellipsoid(grid, centre, radii)
    nothing = np.zeros_like(outer)
    if kind == "solid":
        return outer, nothing
    if kind == "hollow":
        wall = rng.uniform(1.8, 2.8)  # voxels
        inner = _ellipsoid(grid, centre, np.maximum(radii - wall, 1.0))
        return outer & ~inner, inner
    if kind == "lobulated":
        lobes = _ellipsoid(grid, centre, radii * 0.45)
        for _ in range(int(rng.integers(4, 7))):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            lobes |= _ellipsoid(grid, centre + 0.6 * radii * direction, radii * rng.uniform(0.35, 0.5))
        return lobes, nothing
    if kind == "mottled":
        patches = _smooth(rng.normal(size=outer.shape).astype(np.float32), 1.2) > 0
        return outer & patches, nothing
    raise ValueError(f"unknown lesion kind {kind!r}; expected one of {', '.join(LESIONS)}")


def make_phantom(rng: np.random.Generator, shape: Sequence[int] = (48, 48, 48),
                 spacing: Sequence[float] = (2.0, 2.0, 2.0), noise_hu: Sequence[float] = (20.0, 60.0),
                 blur_voxels: float = 0.6, noise_grain_voxels: float = 0.7) -> Phantom:
    """Draw one phantom.

    The field of view lies inside a larger body (an ellipsoid whose radii are 1.0-1.15 times
    the half-size, so only the corners are air), as a crop of an abdominal scan would.

    Args:
        rng: source of every random choice (body, inserts, lesion type, size, attenuation, noise).
        shape: (X, Y, Z) voxels.
        spacing: voxel size in mm.
        noise_hu: range of the noise standard deviation (HU), drawn per phantom: routine to
            low-dose thin-slice CT.
        blur_voxels: standard deviation of the Gaussian point-spread function (partial volume).
        noise_grain_voxels: correlation length of the noise (the reconstruction kernel's
            smoothing); 0 gives white noise.
    """
    shape = tuple(int(s) for s in shape)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    body_radii = np.array(shape, dtype=np.float32) / 2 * rng.uniform(1.0, 1.15, size=3)
    body = _ellipsoid(grid, centre, body_radii)
    hu[body] = SOFT_TISSUE_HU + rng.normal(0.0, 5.0)
    for _ in range(int(rng.integers(2, 6))):  # distractors: small inserts of any class, off-centre
        radii = np.array(shape, dtype=np.float32) * rng.uniform(0.05, 0.1, size=3)
        offset = rng.uniform(0.35, 0.7, size=3) * body_radii * rng.choice([-1.0, 1.0], size=3)
        insert = _ellipsoid(grid, centre + offset, radii) & body
        hu[insert] = TISSUES[int(rng.integers(len(TISSUES)))][1]
    label = int(rng.integers(len(LESIONS)))
    lesion_hu = float(rng.uniform(*LESION_HU))
    radii = np.array(shape, dtype=np.float32) * rng.uniform(0.18, 0.26, size=3)
    enhancing, fluid = lesion_masks(LESIONS[label], grid, centre + rng.uniform(-2.0, 2.0, size=3), radii, rng)
    hu[fluid] = FLUID_HU
    hu[enhancing] = lesion_hu
    if blur_voxels > 0:
        hu = _smooth(hu, blur_voxels)
    noise = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    if noise_grain_voxels > 0:
        noise = _smooth(noise, noise_grain_voxels)
        noise /= noise.std()
    hu += rng.uniform(*noise_hu) * noise
    return Phantom(hu.astype(np.float32), tuple(float(s) for s in spacing), label, lesion_hu)


def affine_of(spacing: Sequence[float]) -> np.ndarray:
    """(4, 4) RAS affine of a volume whose axes are X, Y, Z with the given voxel size."""
    return np.diag([*map(float, spacing), 1.0])


def write_nifti(phantom: Phantom, path: Path) -> Path:
    """Write the phantom as a compressed NIfTI-1 file in int16 HU (scanners' storage type)."""
    import nibabel as nib

    image = nib.Nifti1Image(np.round(phantom.hu).astype(np.int16), affine_of(phantom.spacing))
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def write_dicom_series(phantom: Phantom, folder: Path, series_uid: str | None = None) -> list[Path]:
    """Write the phantom as a DICOM CT series: one file per axial slice (Z), LPS patient coordinates.

    Pixel data is stored as int16 ``HU + 1024`` with RescaleIntercept -1024, as scanners do.
    DICOM's patient axes are LPS, so the RAS volume is flipped along X and Y; a row of a
    slice runs along X (columns) and the rows along Y.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = phantom.spacing
    lps = phantom.hu[::-1, ::-1, :]  # RAS -> LPS voxel order along X and Y
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    paths = []
    for k in range(lps.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Phantom^Synthetic", "PHANTOM"
        ds.InstanceNumber = k + 1
        # Voxel (0, 0) of the LPS array sits at the RAS corner (X-1, Y-1) -> LPS (-(X-1)sx, -(Y-1)sy).
        ds.ImagePositionPatient = [-(lps.shape[0] - 1) * sx, -(lps.shape[1] - 1) * sy, k * sz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [sy, sx]  # row spacing (between rows, along Y), column spacing (along X)
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = lps.shape[1], lps.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        stored = np.round(lps[:, :, k].T + 1024).astype(np.int16)  # (rows=Y, columns=X)
        ds.PixelData = stored.tobytes()
        path = folder / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
