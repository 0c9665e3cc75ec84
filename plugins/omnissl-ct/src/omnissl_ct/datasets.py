"""CT/MR volume data sets: a folder, list file or CSV manifest of volumes, and the synthetic-phantom demo set.

Both are :class:`omnissl_ct.volumes.VolumeSet` s: volumes cached after the deterministic
MONAI pipeline, each served as ``crops_per_volume`` samples (crops).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path
from typing import Annotated, Literal, Sequence

import numpy as np

from omnissl import skip_or_raise
from omnissl.cache import atomic_folder, cache_folder
from omnissl.errors import DataError, RecipeError
from omnissl.recipe import Range
from omnissl_ct.catalog import (DICOM_MODALITIES, Catalog, Entry, dicom_modality, find_in_folder, read_list,
                                read_manifest)
from omnissl_ct.phantom import GENERATOR_VERSION, LESIONS, make_phantom, write_nifti
from omnissl_ct.preprocessing import PreprocessSettings
from omnissl_ct.readers import Source
from omnissl_ct.volumes import Volume, VolumeSet

MNI152_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
Intensity = Literal["ct", "mr", "auto"]


class CTVolumes(VolumeSet):
    """Every NIfTI file and DICOM series under ``root`` (recursive), named in ``list_file``, or
    listed in the CSV ``manifest``; each volume served as ``crops_per_volume`` crops.

    Under ``root``, label masks are recognised by name (``*_seg*``, ``*_label*``, ``*_mask*``,
    ``*_gt``; anything under nnU-Net's ``labelsTr/``/``labelsTs/`` or TotalSegmentator's
    ``segmentations/``), never trained on, reported once, and paired with their image where
    one is found (each sample's ``masks``). Each volume gets CT handling (the HU window) or MR
    handling (its own 0.5th-99.5th percentiles to [0, 1]): the manifest's modality cell when
    there is one, else ``intensity``, where ``auto`` reads a DICOM series' Modality tag (a
    NIfTI file records no modality, so it needs the manifest's cell). Unusable volumes (corrupt
    files, a series with a missing or duplicated slice, a 2-D image, NaN voxels, no voxel above
    ``foreground_hu``: all air; an unknown modality) are skipped with a warning naming the file
    and the problem, and counted in ``skipped``; ``strict: true`` makes them fatal.

    Args:
        root: folder searched recursively for ``.nii``/``.nii.gz`` files and DICOM series folders.
        list_file: text file with one volume path per line (instead of ``root``).
        manifest: CSV file with a header, one volume per row (instead of ``root``).
        path_column: the manifest's column of volume paths (relative to its folder, or absolute).
        label_column: the manifest's label column: class names, or numbers with a fraction for
            regression; a blank cell is unlabelled; no ``label`` column: no labels (another
            name the manifest lacks is an error).
        group_column: the manifest's column of what a held-out split keeps together (a patient);
            null: each volume is its own group.
        modality_column: the manifest's column saying CT or MR per volume (a blank cell falls back
            to ``intensity``); null: ``intensity`` decides for every volume.
        intensity: ``ct`` (HU window to [0, 1]), ``mr`` (per-volume percentiles to [0, 1]) or
            ``auto`` (a DICOM series' Modality tag; other volumes need a modality cell).
        crops_per_volume: samples per volume per epoch, each its own random crop (1: one per volume).
        spacing: target voxel size in mm; null keeps each volume's own.
        hu_window: CT intensity window in HU, mapped to [0, 1].
        foreground_hu: CT body threshold (HU) for the foreground crop (MR: voxels above 0).
        cache_dir: where preprocessed volumes are cached (None: ``$OMNISSL_CACHE/ct``, else ``omnissl/ct``
            in the user's cache folder, ``~/.cache`` on Linux).
        strict: stop at the first unusable volume.
    """

    def __init__(self, root: str | None = None, list_file: str | None = None, manifest: str | None = None,
                 path_column: str = "path", label_column: str = "label", group_column: str | None = None,
                 modality_column: str | None = None, intensity: Intensity = "ct",
                 crops_per_volume: Annotated[int, Range(ge=1)] = 1,
                 spacing: Annotated[list[float] | None, Range(gt=0)] = (1.5, 1.5, 1.5),
                 hu_window: Annotated[list[float], Range(ascending=True)] = (-1000.0, 1000.0),
                 foreground_hu: Annotated[float, Range()] = -500.0, cache_dir: str | None = None,
                 strict: bool = False):
        if intensity not in ("ct", "mr", "auto"):
            raise RecipeError(f"data.intensity must be 'ct', 'mr' or 'auto', got {intensity!r}")
        catalog = _catalog(root, list_file, manifest, path_column, label_column, group_column, modality_column)
        if not catalog.entries and not catalog.problems:
            found = (f"; the {len(catalog.masks)} volumes found there are all label masks (named *_seg, *_label, "
                     f"*_mask, *_gt or under labelsTr/, segmentations/)" if catalog.masks else "")
            raise DataError(f"no NIfTI file (.nii, .nii.gz) or DICOM series under {catalog.where}{found}")
        if catalog.masks:
            paired = sum(1 for e in catalog.entries if e.masks)
            warnings.warn(f"found {len(catalog.entries)} images and {len(catalog.masks)} masks under "
                          f"{catalog.where}; masks are not trained on ({paired} images paired with their masks)")
        skipped: list[tuple[object, str]] = []
        for where, reason in catalog.problems:
            skip_or_raise(skipped, where, reason, strict, what="manifest row")
        volumes = []
        for entry in catalog.entries:
            chosen, problem = _intensity_of(entry, intensity, modality_column)
            if problem:
                skip_or_raise(skipped, entry.source.path, problem, strict, what="volume")
                continue
            volumes.append(Volume(entry.source, chosen, entry.label, entry.group or "", entry.masks))
        # The HU settings are CT's alone: MR caches do not depend on them.
        settings = {"ct": PreprocessSettings("ct", spacing, hu_window, foreground_hu),
                    "mr": PreprocessSettings("mr", spacing)}
        super().__init__(volumes, settings, crops_per_volume, cache_folder("ct", cache_dir), strict, catalog.where,
                         skipped)
        self.masks_found = len(catalog.masks)
        if group_column is not None:
            self.group_kind = group_column
        self.task, self.classes, self.labels = "classification", [], None
        if catalog.labelled:
            per_volume, self.classes, self.task = labels_from_cells([v.label for v in self.volumes])
            self.labels = None if per_volume is None else self.per_crop(per_volume)


def _catalog(root: str | None, list_file: str | None, manifest: str | None, path_column: str, label_column: str,
             group_column: str | None, modality_column: str | None) -> Catalog:
    given = [name for name, value in (("root", root), ("list_file", list_file), ("manifest", manifest))
             if value is not None]
    if len(given) != 1:
        raise DataError("give exactly one of data.root (a folder of volumes), data.list_file (a text file naming "
                        "one NIfTI file or DICOM series folder per line) and data.manifest (a CSV file with a "
                        "path column)" + (f"; got {' and '.join(given)}" if given else ""))
    if manifest is None:
        columns = {"path_column": path_column != "path", "label_column": label_column != "label",
                   "group_column": group_column is not None, "modality_column": modality_column is not None}
        if any(columns.values()):
            raise RecipeError(f"data.{', data.'.join(k for k, v in columns.items() if v)} name columns of a CSV "
                              f"manifest: give data.manifest instead of data.{given[0]}, or remove them")
        return find_in_folder(root) if root is not None else read_list(list_file)
    return read_manifest(manifest, path_column, label_column, group_column, modality_column)


def _intensity_of(entry: Entry, intensity: str, modality_column: str | None) -> tuple[str, str | None]:
    """(``"ct"`` or ``"mr"``, None), or ("", why the volume's modality is unknown)."""
    if entry.modality is not None:
        return entry.modality, None
    if intensity != "auto":
        return intensity, None
    if entry.source.kind == "dicom":
        try:
            tag = dicom_modality(entry.source)
        except Exception as exc:
            return "", f"cannot read the series' Modality tag ({type(exc).__name__}: {exc})"
        if tag in DICOM_MODALITIES:
            return DICOM_MODALITIES[tag], None
        return "", f"the series' DICOM Modality is {tag!r}; intensity auto reads CT and MR series only"
    cell = f"give it a CT or MR cell in the manifest's {modality_column!r} column" if modality_column else \
        "list it in a data.manifest with a data.modality_column"
    return "", f"intensity auto, but a NIfTI file records no modality: {cell}, or set data.intensity to ct or mr"


def labels_from_cells(cells: Sequence[str | None]) -> tuple[np.ndarray | None, list[str], str]:
    """Per-volume labels from manifest cells: (labels, classes, task).

    Class names become indices into the sorted names (numerically sorted when all are
    integers); numbers with a fraction make a regression target. A blank cell (or a
    non-finite number) is NaN: unlabelled. All blank: no labels (None).
    """
    known = [c for c in cells if c]
    if not known:
        return None, [], "classification"
    try:
        numbers = [float(c) for c in known]
    except ValueError:
        numbers = None
    if numbers is not None and not all(x.is_integer() for x in numbers if np.isfinite(x)):
        values = [float(c) if c else float("nan") for c in cells]
        return np.array([v if np.isfinite(v) else float("nan") for v in values]), [], "regression"
    if numbers is not None:
        known = [c for c, x in zip(known, numbers) if np.isfinite(x)]
    classes = sorted(set(known), key=float if numbers is not None else None)
    index = {name: i for i, name in enumerate(classes)}
    values = [index.get(c or "", float("nan")) for c in cells]
    return np.array(values, dtype=np.int64 if len(known) == len(cells) else np.float64), classes, "classification"


def mni152_t1_path() -> Path:
    """nilearn's bundled MNI152 (ICBM 2009a symmetric) T1 template, read from the installed package."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.real_volumes needs nilearn, whose wheel ships the MNI152 template: "
                        "pip install nilearn (or set data.real_volumes=false)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / MNI152_T1


class CTPhantoms(VolumeSet):
    """Synthetic CT phantoms written as NIfTI files, plus real volumes that ship with pip packages.

    Phantoms come from :func:`omnissl_ct.phantom.make_phantom`; each is labelled with the
    morphology of its central lesion (solid, hollow, lobulated, mottled), drawn by the
    generator: an honest probe target that needs shape and texture, since the lesion's
    attenuation is drawn independently of its type.
    With ``real_volumes``, nilearn's MNI152 T1 template (real MR, scaled per volume by its
    percentiles) joins the pre-training data, unlabelled.

    Args:
        n: number of phantoms.
        shape: phantom size in voxels (X, Y, Z).
        spacing: phantom voxel size in mm; also the resampling target.
        seed: phantom generator seed.
        real_volumes: add the MNI152 T1 template (unlabelled).
        hu_window: CT intensity window in HU, mapped to [0, 1] (the demo uses the abdominal
            soft-tissue window, [-160, 240]).
        crops_per_volume: samples per volume per epoch, each its own random crop (1: one per volume).
        cache_dir: where phantoms and preprocessed volumes are stored (None: ``$OMNISSL_CACHE/ct``, else
            ``omnissl/ct`` in the user's cache folder, ``~/.cache`` on Linux).
    """

    def __init__(self, n: Annotated[int, Range(ge=1)] = 200, shape: Annotated[list[int], Range(ge=1)] = (48, 48, 48),
                 spacing: Annotated[list[float], Range(gt=0)] = (2.0, 2.0, 2.0), seed: Annotated[int, Range(ge=0)] = 0,
                 real_volumes: bool = True,
                 hu_window: Annotated[list[float], Range(ascending=True)] = (-1000.0, 1000.0),
                 crops_per_volume: Annotated[int, Range(ge=1)] = 1, cache_dir: str | None = None):
        size = f"{'x'.join(map(str, shape))}-{'x'.join(map(str, spacing))}"
        cache = cache_folder("ct", cache_dir)
        folder = cache / f"phantoms-v{GENERATOR_VERSION}-n{n}-s{seed}-{size}"
        labels_file = folder / "labels.json"
        if not labels_file.is_file():
            _write_phantoms(folder, n, shape, spacing, seed)
        labels = json.loads(labels_file.read_text())
        volumes = [Volume(Source(folder / name, "nifti"), "ct", float(labels[name])) for name in sorted(labels)]
        if real_volumes:
            volumes.append(Volume(Source(mni152_t1_path(), "nifti"), "mr", float("nan")))
        settings = {"ct": PreprocessSettings("ct", spacing, hu_window), "mr": PreprocessSettings("mr", spacing)}
        super().__init__(volumes, settings, crops_per_volume, cache, where=str(folder))
        self.labels = self.per_crop([v.label for v in self.volumes])
        self.classes = list(LESIONS)
        self.task = "classification"


def _write_phantoms(folder: Path, n: int, shape: Sequence[int], spacing: Sequence[float], seed: int) -> None:
    """Generate the phantom set into a private folder and rename it into place, so a crash
    never leaves a partial set and two processes generating the same set at once (DDP ranks,
    parallel tests) never mix files; the loser of the race discards its copy."""
    if folder.is_dir() and not (folder / "labels.json").is_file():
        shutil.rmtree(folder)  # a partial set left by a crash of an older version
    rng = np.random.default_rng(seed)
    labels = {}
    with atomic_folder(folder, "phantom set") as partial:  # omnissl.cache: renamed into place when whole
        for i in range(n):
            phantom = make_phantom(rng, shape, spacing)
            write_nifti(phantom, partial / f"phantom_{i:05d}.nii.gz")
            labels[f"phantom_{i:05d}.nii.gz"] = phantom.label
        (partial / "labels.json").write_text(json.dumps(labels, indent=0))
