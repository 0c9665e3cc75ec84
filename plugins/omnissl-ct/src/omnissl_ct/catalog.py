"""Which volumes a data set reads, and what is known about each before it is read.

Three ways to name volumes:

* a folder, searched recursively for NIfTI files and DICOM series folders. Label masks are
  recognised by name and never trained on: a file or series whose name has a mask word
  (``case_seg.nii.gz``, ``case_label.nii.gz``, ``case_mask_liver.nii.gz``, ``case_gt.nii.gz``;
  ``_`` or ``-`` before the word), or anything under a folder called ``labelsTr``/``labelsTs``
  (nnU-Net) or ``segmentations`` (TotalSegmentator). Each mask is paired with its image when
  one is found: the same name without the mask word in the same folder (``case_seg`` with
  ``case``), nnU-Net's ``labelsTr/case`` with ``imagesTr/case_0000`` (the channel suffix
  dropped), TotalSegmentator's ``s0001/segmentations/*`` with the one image in ``s0001/``;
* a list file: one path per line;
* a CSV manifest with a header: a path column and optional label, group and modality
  columns, named by the recipe.

The per-volume modality (``ct`` or ``mr``, which picks the intensity handling) comes from
the manifest's modality column, else, when asked for (``intensity: auto``), from a DICOM
series' ``Modality`` tag; NIfTI files carry no modality.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from omnissl.errors import DataError
from omnissl_ct.readers import NIFTI_SUFFIXES, Source, dicom_files, is_nifti

# A mask word in a file or series name, after "_" or "-", ending the name or followed by a separator or a digit.
MASK_WORD = re.compile(r"[_-](labels?|seg|segmentations?|masks?|gt)(?=$|[_\-.\d])", re.IGNORECASE)
# Folders whose every volume is a mask: nnU-Net's label folders, TotalSegmentator's per-structure masks.
MASK_FOLDERS = ("labelstr", "labelsts", "segmentations")
# What a manifest's modality cell may say, and the intensity handling it picks.
MODALITY_NAMES = {"ct": "ct", "mr": "mr", "mri": "mr"}
# A DICOM Modality tag the data set reads, and its intensity handling.
DICOM_MODALITIES = {"CT": "ct", "MR": "mr"}


@dataclass(frozen=True)
class Entry:
    """One volume to read, with what a manifest or the folder says about it.

    Attributes:
        source: the volume.
        label: the manifest's label cell ("" when blank), None without a label column.
        group: the manifest's group cell, None without a group column or when blank.
        modality: ``"ct"`` or ``"mr"`` from the manifest; None when it says nothing.
        masks: label masks paired with the volume (folder discovery), never trained on.
    """

    source: Source
    label: str | None = None
    group: str | None = None
    modality: str | None = None
    masks: tuple[Path, ...] = ()


@dataclass
class Catalog:
    """What a folder, list file or manifest names.

    Attributes:
        entries: the volumes to train on.
        masks: every mask found (paired or not); never trained on.
        where: the folder or file, for messages.
        labelled: the manifest has the label column.
        problems: (where, reason) for manifest rows that name nothing usable.
    """

    entries: list[Entry]
    masks: list[Path]
    where: str
    labelled: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def is_mask(path: Path, root: Path) -> bool:
    """True for a label mask: a mask word in its name, or under a mask folder below ``root``."""
    folders = path.relative_to(root).parts[:-1]
    return bool(MASK_WORD.search(_stem(path))) or any(f.lower() in MASK_FOLDERS for f in folders)


def pair_masks(images: list[Path], masks: list[Path]) -> dict[Path, tuple[Path, ...]]:
    """The masks of each image that has any (see the module docstring for the rules)."""
    by_name = {(p.parent, _stem(p)): p for p in images}
    # nnU-Net names an image case_XXXX (XXXX its channel) and its mask case.
    by_case = {(p.parent, re.sub(r"_\d{4}$", "", _stem(p))): p for p in images}
    by_folder: dict[Path, list[Path]] = {}
    for p in images:
        by_folder.setdefault(p.parent, []).append(p)
    pairs: dict[Path, list[Path]] = {}
    for mask in masks:
        word = MASK_WORD.search(_stem(mask))
        base, folder = (_stem(mask)[:word.start()] if word else _stem(mask)), mask.parent
        image = by_name.get((folder, base))
        if image is None and folder.name.lower().startswith("labels"):  # labelsTr/case <-> imagesTr/case_0000
            image = by_case.get((folder.with_name("images" + folder.name[len("labels"):]), base))
        if image is None and folder.name.lower() == "segmentations" and len(by_folder.get(folder.parent, [])) == 1:
            image = by_folder[folder.parent][0]  # TotalSegmentator: s0001/ct.nii.gz and s0001/segmentations/*
        if image is not None:
            pairs.setdefault(image, []).append(mask)
    return {image: tuple(found) for image, found in pairs.items()}


def find_in_folder(root: str) -> Catalog:
    """Every NIfTI file and DICOM series folder under ``root``; masks set apart and paired."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.root {folder} is not a folder")
    found = [Source(p, "nifti") for p in sorted(folder.rglob("*")) if p.is_file() and is_nifti(p)]
    for sub in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        if dicom_files(sub):
            found.append(Source(sub, "dicom"))
    masks = [s.path for s in found if s.path != folder and is_mask(s.path, folder)]
    images = [s for s in found if s.path not in set(masks)]
    pairs = pair_masks([s.path for s in images], masks)
    return Catalog([Entry(s, masks=pairs.get(s.path, ())) for s in images], masks, str(folder))


def _resolve(entry: str, base: Path) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else base / path


def read_list(list_file: str) -> Catalog:
    """The volumes named in a text file, one path per line (relative to the file's folder;
    ``#`` starts a comment)."""
    listing = Path(list_file).expanduser()
    if not listing.is_file():
        raise DataError(f"data.list_file {listing} does not exist")
    paths = []
    for line in listing.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            paths.append(_resolve(entry, listing.parent))
    return Catalog([Entry(Source(p, "dicom" if p.is_dir() else "nifti")) for p in paths], [], str(listing))


def read_manifest(manifest: str, path_column: str = "path", label_column: str = "label",
                  group_column: str | None = None, modality_column: str | None = None) -> Catalog:
    """The volumes of a CSV manifest (paths relative to its folder or absolute).

    ``label_column`` is optional when it is the default ``label`` (no such column: no labels);
    every other named column must exist.
    """
    table = Path(manifest).expanduser()
    if not table.is_file():
        raise DataError(f"data.manifest {table} does not exist")
    with open(table, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    named = {"path_column": path_column, "group_column": group_column, "modality_column": modality_column}
    if label_column != "label":
        named["label_column"] = label_column
    for option, column in named.items():
        if column is not None and column not in columns:
            raise DataError(f"{table}: data.{option} is {column!r}, but the manifest's columns are {columns}; "
                            f"set data.{option} to one of them")
    labelled = label_column in columns
    entries, problems = [], []
    for line, row in enumerate(rows, start=2):
        cell = (row.get(path_column) or "").strip()
        if not cell:
            problems.append((f"{table}, line {line}", f"the {path_column!r} cell is empty"))
            continue
        path = _resolve(cell, table.parent)
        modality = None
        if modality_column is not None:
            said = (row.get(modality_column) or "").strip()
            if said and said.lower() not in MODALITY_NAMES:
                problems.append((f"{table}, line {line} ({cell})",
                                 f"the {modality_column!r} cell says {said!r}; only CT and MR volumes are read"))
                continue
            modality = MODALITY_NAMES.get(said.lower()) if said else None
        label = (row.get(label_column) or "").strip() if labelled else None
        group = (row.get(group_column) or "").strip() if group_column else ""
        entries.append(Entry(Source(path, "dicom" if path.is_dir() else "nifti"), label, group or None, modality))
    return Catalog(entries, [], str(table), labelled, problems)


def dicom_modality(source: Source) -> str | None:
    """The ``Modality`` tag of a DICOM series' first slice (``"CT"``, ``"MR"``, ``"PT"`` ...);
    None for a NIfTI file or a series without the tag."""
    if source.kind != "dicom":
        return None
    import pydicom

    files = dicom_files(source.path)
    if not files:
        return None
    header = pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["Modality"])
    return str(header.get("Modality", "") or "").upper() or None
