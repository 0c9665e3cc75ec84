"""Image data sets: folders of files, numpy arrays, and two real sets that ship with pip packages."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from omnissl import skip_or_raise
from omnissl.cache import cache_folder, write_json
from omnissl.errors import DataError
from omnissl.recipe import Range

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _to_chw(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) uint8/float -> (C, H, W) float32 in [0, 1]."""
    array = np.asarray(array)
    scale = 255.0 if array.dtype == np.uint8 else (65535.0 if array.dtype == np.uint16 else 1.0)
    out = array.astype(np.float32) / scale
    if out.ndim == 2:
        out = out[None]
    elif out.ndim == 3:
        out = out[..., :3].transpose(2, 0, 1) if out.shape[-1] in (1, 3, 4) else out
    else:
        raise DataError(f"expected an image of shape (H, W) or (H, W, C), got {array.shape}")
    return np.ascontiguousarray(out)


def _stamp(path: Path) -> str:
    # ctime too: a rewrite whose tool restores the mtime (cp -p, rsync -t) still moves it
    stat = path.stat()
    return f"{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"


def _decode_error(path: Path) -> Exception | None:
    """None if ``path`` is an image whose every pixel decodes, else the error.

    ``verify()`` checks the header and the checksums (PNG CRCs) without decoding; ``load()``
    then decodes every pixel, which is what catches a JPEG cut short after its header.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except Exception as exc:
        return exc
    return None


class ImageFolder:
    """Every image under ``root`` (recursive). Images directly in a class sub-folder of
    ``root`` get that folder's name as their label (sorted names -> 0, 1, ...).

    Every file is decoded in full when the index is built; files that cannot be (corrupt,
    or cut short after a valid header) are skipped with a warning naming them and counted
    in ``skipped``; ``strict: true`` makes them fatal. Files that decoded are recorded by
    size, modification and change time under ``cache_dir``, so a later run decodes only new
    or changed files. An indexed file that no longer decodes when it is read raises a
    :class:`DataError` naming it: it is never replaced by another image, whose label would
    then be wrong.

    Args:
        root: folder of images.
        mode: ``"RGB"`` or ``"L"`` (grey).
        strict: stop at the first unreadable file instead of skipping it.
        cache_dir: where the record of decoded files is kept (None: ``$OMNISSL_CACHE/image``, else
            ``omnissl/image`` in the user's cache folder, ``~/.cache`` on Linux).
    """

    RECORD_VERSION = 1
    sample_kind = "image"

    def __init__(self, root: str, mode: str = "RGB", strict: bool = False, cache_dir: str | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root {self.root} is not a folder")
        self.mode = mode
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for path, error in zip(candidates, self._decode_all(candidates, cache_dir)):
            if error is not None:
                skip_or_raise(self.skipped, path, f"cannot be decoded ({type(error).__name__}: {error})", strict,
                              what="unreadable image", cause=error)
                continue
            self.files.append(path)
        if not self.files:
            raise DataError(f"no readable image under {self.root} (looked for {', '.join(EXTENSIONS)}; "
                            f"{len(self.skipped)} unreadable)")
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} of {len(candidates)} files under {self.root}")
        classes = sorted({p.relative_to(self.root).parts[0] for p in self.files
                          if len(p.relative_to(self.root).parts) > 1})
        self.classes = classes
        self.labels = (np.array([classes.index(p.relative_to(self.root).parts[0]) for p in self.files])
                       if classes and all(len(p.relative_to(self.root).parts) > 1 for p in self.files) else None)
        self.task = "classification"

    def _decode_all(self, candidates: list[Path], cache_dir: str | None) -> list[Exception | None]:
        """The decoding error of each candidate (None: it decodes), reusing the record of earlier runs."""
        cache = cache_folder("image", cache_dir)
        key = hashlib.sha1(f"{self.root.resolve()}|{self.RECORD_VERSION}".encode()).hexdigest()
        record_file = cache / f"decoded-{key}.json"
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):
            record = {}
        names = [str(p.relative_to(self.root)) for p in candidates]
        stamps = [_stamp(p) for p in candidates]
        todo = [i for i, (name, stamp) in enumerate(zip(names, stamps)) if record.get(name) != stamp]
        errors: list[Exception | None] = [None] * len(candidates)
        workers = min(8, os.cpu_count() or 1, max(len(todo), 1))
        with ThreadPoolExecutor(workers) as pool:  # Pillow's decoders release the GIL
            for i, error in zip(todo, pool.map(_decode_error, [candidates[i] for i in todo])):
                errors[i] = error
        if todo:
            fresh = {name: stamp for name, stamp, error in zip(names, stamps, errors) if error is None}
            try:
                write_json(record_file, fresh, "record of decoded images")
            except OSError as exc:  # a read-only cache costs a full decode next time, nothing else
                warnings.warn(f"cannot write the record of decoded images {record_file}: {exc}")
        return errors

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary: the image files used."""
        return {"files": len(self.files)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image

        path = self.files[index]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(self.mode))
        except Exception as exc:  # it decoded when indexed: the file changed since
            raise DataError(f"image {path} decoded when the data set was indexed but cannot be decoded now "
                            f"({type(exc).__name__}: {exc}); was it changed or replaced during the run?") from exc
        return {"image": _to_chw(array), "path": str(path)}


class NumpyImages:
    """Images from a ``.npy`` array (N, H, W[, C]) or from named arrays of a ``.npz`` file.

    A ``.npz`` (``np.savez``) holds the images under ``images_key`` and optionally labels and
    groups under ``labels_key`` and ``groups_key``, so files written as ``X_train``/``y_train``
    are read as they are. A key the file lacks is a :class:`DataError` listing the keys it has,
    except the default ``labels``, whose absence means an unlabelled set. Labels that are
    class names, integers or booleans become class indices (``classes`` holds the names);
    float labels are class indices when every finite one is a whole number (at most 100
    classes), else regression targets; NaN marks an unlabelled image either way.

    Samples holding a NaN or infinite pixel (checked after the cast to float32, the dtype
    they are served in, so float64 values beyond float32's range count too) are skipped
    and counted in ``skipped``, each named as ``file['images'][index]``, with one warning
    naming the file, the key, how many and the first bad index; ``strict: true`` makes the
    first of them fatal. The other samples, and their labels, are kept: one bad sample in
    an array of thousands should not cost the rest, and the labels stay with their images.

    Args:
        path: the file.
        images_key: the ``.npz`` array of images, (N, H, W) or (N, H, W, C).
        labels_key: the ``.npz`` array of labels, (N,) (the default ``labels`` may be absent: an unlabelled
            set); None ignores any labels.
        groups_key: a ``.npz`` array naming each image's group (N,) (patient, scene...), which a
            held-out split keeps on one side; None: no groups.
        strict: stop at the first sample with a non-finite pixel instead of skipping it.
    """

    CHUNK = 1024  # samples checked at a time, so the check never holds a float32 copy of the whole array
    sample_kind = "image"
    MAX_FLOAT_CLASSES = 100  # more distinct whole-number float labels than this are regression targets

    def __init__(self, path: str, images_key: str = "images", labels_key: str | None = "labels",
                 groups_key: str | None = None, strict: bool = False):
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"data.path {file} does not exist")
        try:
            loaded = np.load(file, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"cannot read {file} as numpy data: {exc}") from exc
        self.keys: dict[str, str] = {}
        labels = groups = None
        if isinstance(loaded, np.ndarray):
            named = [f"data.{option}" for option, key, default in (("images_key", images_key, "images"),
                                                                   ("labels_key", labels_key, "labels"),
                                                                   ("groups_key", groups_key, None))
                     if key not in (default, None)]
            if named:
                raise DataError(f"{file} is a .npy file holding one array, the images: {', '.join(named)} name "
                                f"arrays of a .npz file (np.savez); remove them or point data.path at the .npz")
            self.images, where = loaded, f"{file}"
        else:
            try:
                self.images = self._array(loaded, file, "images_key", images_key)
                if labels_key is not None and (labels_key in loaded.files or labels_key != "labels"):
                    labels = self._array(loaded, file, "labels_key", labels_key)
                if groups_key is not None:
                    groups = self._array(loaded, file, "groups_key", groups_key)
            finally:
                loaded.close()
            where = f"{file}[{images_key!r}]"
        if self.images.ndim not in (3, 4):
            raise DataError(f"{where}: images must be (N, H, W) or (N, H, W, C), got {self.images.shape}")
        for what, key, array in (("labels", labels_key, labels), ("groups", groups_key, groups)):
            if array is not None and (array.ndim != 1 or len(array) != len(self.images)):
                raise DataError(f"{file}[{key!r}]: {what} must hold one value per image, shape "
                                f"({len(self.images)},), got {array.shape}"
                                + ("; for one-hot rows store their argmax" if what == "labels" and array.ndim == 2
                                   else ""))
        self.labels, self.classes, self.task = self._labels(labels)
        self.groups = groups.astype(str) if groups is not None else None
        self.group_kind = groups_key
        self.skipped: list[tuple[str, str]] = []
        bad = self._non_finite(self.images)
        if len(bad):
            for index in bad:
                skip_or_raise(self.skipped, f"{where}[{index}]", "NaN or infinite pixel values (as float32)",
                              strict, what="image", warn=False)
            if len(bad) == len(self.images):
                raise DataError(f"every one of the {len(bad)} images in {where} has NaN or infinite pixel values "
                                f"(first: index {bad[0]})")
            warnings.warn(f"skipping {len(bad)} of {len(self.images)} images in {where} with NaN or infinite "
                          f"pixel values (first: index {bad[0]}; all in data set .skipped)")
            keep = np.setdiff1d(np.arange(len(self.images)), bad)
            self.images = self.images[keep]
            self.labels = self.labels[keep] if self.labels is not None else None
            self.groups = self.groups[keep] if self.groups is not None else None

    def _array(self, loaded: Any, file: Path, option: str, key: str) -> np.ndarray:
        """The array ``key`` of an opened ``.npz``, recorded in ``keys`` for the summary."""
        if key not in loaded.files:
            raise DataError(f"{file} has no array {key!r} (data.{option}); its arrays are "
                            f"{', '.join(map(repr, loaded.files)) or '(none)'}. Set data.{option} to one of them.")
        try:
            array = loaded[key]
        except ValueError as exc:  # an object array: reading it would need pickle, which is never used
            raise DataError(f"cannot read {file}[{key!r}] without unpickling ({exc}); save it as a plain "
                            f"numeric or string array") from exc
        self.keys[option.removesuffix("_key")] = key
        return array

    @classmethod
    def _labels(cls, labels: np.ndarray | None) -> tuple[np.ndarray | None, list[str], str]:
        """(labels, classes, task) from the stored labels: class indices, or float regression targets."""
        if labels is None:
            return None, [], "classification"
        if labels.dtype.kind == "f":
            known = labels[np.isfinite(labels)]
            if not len(known):
                return None, [], "classification"
            if not (np.array_equal(known, np.round(known)) and len(np.unique(known)) <= cls.MAX_FLOAT_CLASSES):
                return labels.astype(np.float64), [], "regression"
            values, index = np.unique(known, return_inverse=True)
            out = np.full(len(labels), np.nan)
            out[np.isfinite(labels)] = index
            classes = [f"{v:g}" for v in values]
            return (out if len(known) < len(labels) else out.astype(np.int64)), classes, "classification"
        values, index = np.unique(labels, return_inverse=True)  # names, integers or booleans
        names = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values.tolist()]
        return index.astype(np.int64), names, "classification"

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary: one file, and the ``.npz`` arrays read."""
        return {"files": 1, **{f"{what} array": key for what, key in self.keys.items()}}

    @classmethod
    def _non_finite(cls, images: np.ndarray) -> np.ndarray:
        """Indices of the samples with a pixel that is not finite once cast to float32."""
        if not np.issubdtype(images.dtype, np.floating):
            return np.zeros(0, dtype=np.int64)  # integer pixels are always finite
        bad = []
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: that is what we look for
            for start in range(0, len(images), cls.CHUNK):
                chunk = np.asarray(images[start:start + cls.CHUNK], dtype=np.float32).reshape(
                    min(cls.CHUNK, len(images) - start), -1)
                bad.extend(start + np.flatnonzero(~np.isfinite(chunk).all(axis=1)))
        return np.asarray(bad, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": _to_chw(self.images[index])}


class DigitsDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits), labels 0-9.

    The data ships inside scikit-learn's wheel (one file, ``digits.csv.gz``): nothing is downloaded.
    ``classes`` keeps some digits only (two phases of sequential pre-training on different
    digits, ``data.phases: [{classes: [0,1,2,3,4], ...}, {classes: [5,6,7,8,9], ...}]``); the
    labels stay the digits (a kept 7 is labelled 7, ``classes`` still names all ten), and
    ``indices`` holds each kept sample's position among the 1,797, in their order.

    Args:
        classes: the digits to keep, e.g. ``[0, 1, 2, 3, 4]`` (null: all ten); the labels stay the
            digits; a digit outside 0-9 is an error.
    """

    sample_kind = "image"

    def __init__(self, classes: Annotated[list[int] | None, Range(ge=0, le=9)] = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8], 0..16 grey levels
        labels = digits.target.astype(np.int64)
        self.classes = [str(name) for name in digits.target_names]
        self.kept: list[int] | None = None
        self.indices = np.arange(len(labels))
        if classes is not None:
            self.kept = self._check_classes(classes, [int(name) for name in digits.target_names])
            self.indices = np.flatnonzero(np.isin(labels, self.kept))
        self.images, self.labels = images[self.indices], labels[self.indices]
        self.task = "classification"

    @staticmethod
    def _check_classes(classes: Any, known: list[int]) -> list[int]:
        """``classes`` as sorted digits; a :class:`DataError` naming ``data.classes`` otherwise."""
        if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple)):
            raise DataError(f"data.classes must be a list of digits (e.g. [0, 1, 2, 3, 4]), got {classes!r}")
        if not classes:
            raise DataError("data.classes is empty: list the digits to keep (0-9), or remove the key to keep all ten")
        bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, (int, np.integer))]
        if bad:
            raise DataError(f"data.classes must list digits as integers, got {bad[0]!r}; the classes are "
                            f"{known[0]}-{known[-1]}")
        unknown = sorted({int(c) for c in classes} - set(known))
        if unknown:
            raise DataError(f"data.classes: {unknown} {'is not a class' if len(unknown) == 1 else 'are not classes'} "
                            f"of the digits; the classes are {known[0]}-{known[-1]}")
        if len(set(classes)) < len(classes):
            twice = sorted({int(c) for c in classes if list(classes).count(c) > 1})
            raise DataError(f"data.classes lists {twice} more than once; list each digit once")
        return sorted(int(c) for c in classes)

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary: the one file scikit-learn ships, and the digits kept."""
        if self.kept is None:
            return {"files": 1}
        return {"files": 1, "digits kept": ", ".join(map(str, self.kept))}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index][None]}


def bundled_skimage_images() -> dict[str, Path]:
    """``skimage.data`` loaders whose image ships inside the installed scikit-image package.

    A loader qualifies when its body loads exactly one file (``_load("data/<file>")``), that
    file is in the package's ``data`` folder, and its SHA-256 matches ``skimage.data``'s
    registry: then scikit-image serves it from the package and never downloads. Loaders of
    downloaded images (``cells3d``, ``kidney``...), of several files (``stereo_motorcycle``)
    and helpers (``download_all``, ``data_dir``) are left out.

    Returns:
        loader name -> the bundled file.
    """
    import inspect
    import re

    import skimage.data as data
    from skimage.data import _fetchers

    package = Path(_fetchers.__file__).resolve().parent.parent  # the folder registry paths are relative to
    found = {}
    for name in data.__all__:
        loader = getattr(_fetchers, name, None)
        if not inspect.isfunction(loader):
            continue
        try:
            source = inspect.getsource(loader)
        except (OSError, TypeError):  # no source shipped: we cannot tell what it reads, so not allowed
            continue
        files = re.findall(r"""_load\(\s*['"]([^'"]+)['"]""", source)
        if len(files) != 1 or "_fetch(" in source:
            continue
        path = package / files[0]
        expected = _fetchers.registry.get(files[0])
        if path.is_file() and expected and _fetchers.file_hash(str(path)) == expected:
            found[name] = path
    return found


class SkimageTiles:
    """Tiles of scikit-image's bundled sample photographs; the label is the photograph. The
    photograph is also each tile's group (``group_kind`` ``"image"``).

    Only images that ship inside the installed scikit-image package are accepted
    (:func:`bundled_skimage_images`): any other ``skimage.data`` name (``download_all``,
    ``cells3d``, a typo) is a :class:`DataError` listing the allowed names, never a download.

    Args:
        names: ``skimage.data`` image names (default: eight RGB/grey photographs that ship with the wheel).
        tile: side of each square tile in pixels.
        stride: step between tiles.
    """

    DEFAULT = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "moon", "page")
    sample_kind = "tile"

    def __init__(self, names: list[str] | None = None, tile: Annotated[int, Range(ge=1)] = 64,
                 stride: Annotated[int, Range(ge=1)] = 32):
        from skimage import data

        if isinstance(names, str) or (names is not None and not all(isinstance(n, str) for n in names)):
            raise DataError(f"data.names must be a list of skimage.data image names, got {names!r}")
        names = list(names or self.DEFAULT)
        bundled = bundled_skimage_images()
        unknown = [name for name in names if name not in bundled]
        if unknown:
            raise DataError(f"data.names {unknown}: not images bundled with the installed scikit-image "
                            f"(other names would be downloaded at run time); choose from "
                            f"{', '.join(sorted(bundled)) or '(none found)'}")
        self.tiles: list[np.ndarray] = []
        labels = []
        for label, name in enumerate(names):
            image = _to_chw(getattr(data, name)())
            if image.shape[0] == 1:
                image = np.repeat(image, 3, axis=0)
            _, h, w = image.shape
            for top in range(0, h - tile + 1, stride):
                for left in range(0, w - tile + 1, stride):
                    self.tiles.append(image[:, top:top + tile, left:left + tile])
                    labels.append(label)
        self.labels = np.array(labels, dtype=np.int64)
        self.classes = names
        self.groups = np.array(names)[self.labels]
        self.group_kind = "image"
        self.task = "classification"

    def __len__(self) -> int:
        return len(self.tiles)

    def summary(self) -> dict[str, int | float | str]:
        """Facts for the run's data summary: the photographs used and how many tiles each gave."""
        per_image = np.bincount(self.labels, minlength=len(self.classes))
        low, high = int(per_image.min()), int(per_image.max())
        return {"files": len(self.classes), "tiles per image": low if low == high else f"{low}-{high}"}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.tiles[index]}
