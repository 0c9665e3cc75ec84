"""Image data sets: folders of files, numpy arrays, and two real sets that ship with pip packages."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from omnissl import skip_or_raise
from omnissl.errors import DataError

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


class ImageFolder:
    """Every image under ``root`` (recursive). Images directly in a class sub-folder of
    ``root`` get that folder's name as their label (sorted names -> 0, 1, ...).

    Files that cannot be read are skipped with a warning naming them and counted in
    ``skipped``; ``strict: true`` makes them fatal.

    Args:
        root: folder of images.
        mode: ``"RGB"`` or ``"L"`` (grey).
        strict: stop at the first unreadable file instead of skipping it.
    """

    def __init__(self, root: str, mode: str = "RGB", strict: bool = False):
        from PIL import Image

        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root {self.root} is not a folder")
        self.mode = mode
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in candidates:
            try:
                with Image.open(path) as image:
                    image.verify()  # header and checksums, without decoding every pixel
            except Exception as exc:
                skip_or_raise(self.skipped, path, str(exc), strict, what="unreadable image", cause=exc)
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

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image

        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                with Image.open(path) as image:
                    array = np.asarray(image.convert(self.mode))
                return {"image": _to_chw(array), "path": str(path)}
            except Exception as exc:  # verify() passed, but the pixel data is broken: use the next file
                warnings.warn(f"skipping image {path}, which cannot be decoded: {exc}")
        raise DataError(f"no image under {self.root} can be decoded")


class NumpyImages:
    """Images from a ``.npy`` array (N, H, W[, C]) or a ``.npz`` with ``images`` and optional ``labels``.

    Args:
        path: the file.
    """

    def __init__(self, path: str):
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"data.path {file} does not exist")
        try:
            loaded = np.load(file, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"cannot read {file} as numpy data: {exc}") from exc
        if isinstance(loaded, np.ndarray):
            self.images, self.labels = loaded, None
        else:
            if "images" not in loaded:
                raise DataError(f"{file} has arrays {list(loaded)}, but no 'images'")
            self.images = loaded["images"]
            self.labels = loaded["labels"] if "labels" in loaded else None
        if self.images.ndim not in (3, 4):
            raise DataError(f"{file}: images must be (N, H, W) or (N, H, W, C), got {self.images.shape}")
        self.task = "classification"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": _to_chw(self.images[index])}


class DigitsDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits), labels 0-9.

    The data ships inside scikit-learn's wheel: nothing is downloaded.
    """

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.images = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8], 0..16 grey levels
        self.labels = digits.target.astype(np.int64)
        self.task = "classification"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index][None]}


class SkimageTiles:
    """Tiles of scikit-image's bundled sample photographs; the label is the photograph.

    Args:
        names: ``skimage.data`` image names (default: eight RGB/grey photographs that ship with the wheel).
        tile: side of each square tile in pixels.
        stride: step between tiles.
    """

    DEFAULT = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "moon", "page")

    def __init__(self, names: list[str] | None = None, tile: int = 64, stride: int = 32):
        from skimage import data

        self.tiles: list[np.ndarray] = []
        labels = []
        for label, name in enumerate(names or self.DEFAULT):
            loader = getattr(data, name, None)
            if loader is None:
                raise DataError(f"skimage.data has no image {name!r}")
            image = _to_chw(loader())
            if image.shape[0] == 1:
                image = np.repeat(image, 3, axis=0)
            _, h, w = image.shape
            for top in range(0, h - tile + 1, stride):
                for left in range(0, w - tile + 1, stride):
                    self.tiles.append(image[:, top:top + tile, left:left + tile])
                    labels.append(label)
        self.labels = np.array(labels)
        self.task = "classification"

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.tiles[index]}
