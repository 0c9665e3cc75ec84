import warnings

import numpy as np
import pytest
from PIL import Image

from omnissl.errors import DataError
from omnissl_image import DigitsDataset, ImageFolder, NumpyImages, SkimageTiles


def make_folder(root, corrupt: bool = True):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    if corrupt:
        (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return root


def test_folder_labels_from_subfolders_and_corrupt_file_skipped(tmp_path):
    root = make_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*broken\.png"):
        dataset = ImageFolder(str(root))
    assert len(dataset) == 6 and len(dataset.skipped) == 1
    assert dataset.classes == ["cats", "dogs"] and dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    sample = dataset[0]
    assert sample["image"].shape == (3, 20, 24) and sample["image"].dtype == np.float32
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0


def test_folder_strict_and_empty(tmp_path):
    with pytest.raises(DataError, match="broken.png"):
        ImageFolder(str(make_folder(tmp_path / "a")), strict=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.png").write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no readable image under .*empty.*1 unreadable"):
            ImageFolder(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolder(str(tmp_path / "missing"))


def test_numpy_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images, labels=np.arange(5))
    dataset = NumpyImages(str(tmp_path / "set.npz"))
    assert len(dataset) == 5 and dataset.labels.tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(dataset[2]["image"], images[2].transpose(2, 0, 1) / 255.0)
    np.save(tmp_path / "bad.npy", np.zeros(4))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        NumpyImages(str(tmp_path / "bad.npy"))


def test_real_bundled_sets():
    digits = DigitsDataset()
    assert len(digits) == 1797 and digits[0]["image"].shape == (1, 8, 8)
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    tiles = SkimageTiles(names=["camera", "astronaut"], tile=64, stride=64)
    assert len(tiles) == 128 and tiles[0]["image"].shape == (3, 64, 64)
    assert set(tiles.labels.tolist()) == {0, 1}
