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


def test_numpy_arrays_are_named_by_the_recipe(tmp_path):
    """An .npz as Keras-style scripts write it: X_train / y_train, and a subject per image."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", X_train=images, y_train=np.array([3, 7, 3, 7, 7, 3], dtype=np.uint8),
             subject=np.array(["s1", "s1", "s2", "s2", "s3", "s3"]))
    dataset = NumpyImages(str(tmp_path / "train.npz"), images_key="X_train", labels_key="y_train",
                          groups_key="subject")
    assert len(dataset) == 6 and np.allclose(dataset[4]["image"][0], images[4] / 255.0)
    assert dataset.classes == ["3", "7"] and dataset.labels.tolist() == [0, 1, 0, 1, 1, 0]
    assert dataset.groups.tolist() == ["s1", "s1", "s2", "s2", "s3", "s3"] and dataset.group_kind == "subject"
    assert dataset.sample_kind == "image"
    assert dataset.summary() == {"files": 1, "images array": "X_train", "labels array": "y_train",
                                 "groups array": "subject"}
    unlabelled = NumpyImages(str(tmp_path / "train.npz"), images_key="X_train")  # no 'labels' array: none
    assert unlabelled.labels is None and unlabelled.groups is None
    assert NumpyImages(str(tmp_path / "train.npz"), images_key="X_train", labels_key=None).labels is None
    for option, key in (("images_key", "images"), ("labels_key", "y_test"), ("groups_key", "patient")):
        options = {"images_key": "X_train", option: key}
        with pytest.raises(DataError, match=rf"train\.npz has no array '{key}' \(data\.{option}\); its arrays are "
                                            r"'X_train', 'y_train', 'subject'"):
            NumpyImages(str(tmp_path / "train.npz"), **options)
    np.save(tmp_path / "images.npy", images)
    with pytest.raises(DataError, match=r"images\.npy is a \.npy file holding one array.*data\.images_key"):
        NumpyImages(str(tmp_path / "images.npy"), images_key="X_train")
    assert NumpyImages(str(tmp_path / "images.npy")).summary() == {"files": 1}


def test_numpy_labels_become_class_indices_or_regression_targets(tmp_path):
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    cases = {"names": (np.array(["cat", "dog", "cat", "owl"]), [0, 1, 0, 2], ["cat", "dog", "owl"]),
             "whole floats, one unknown": (np.array([1.0, np.nan, 2.0, 1.0]), [0, np.nan, 1, 0], ["1", "2"]),
             "ages": (np.array([31.5, 40.25, 22.0, 58.0]), [31.5, 40.25, 22.0, 58.0], [])}
    for name, (stored, labels, classes) in cases.items():
        np.savez(tmp_path / "set.npz", images=images, labels=stored)
        dataset = NumpyImages(str(tmp_path / "set.npz"))
        np.testing.assert_array_equal(dataset.labels, labels, err_msg=name)
        assert dataset.classes == classes, name
        assert dataset.task == ("regression" if name == "ages" else "classification")
    np.savez(tmp_path / "onehot.npz", images=images, labels=np.eye(4))
    with pytest.raises(DataError, match=r"onehot\.npz\['labels'\]: labels must hold one value per image.*argmax"):
        NumpyImages(str(tmp_path / "onehot.npz"))
    np.savez(tmp_path / "groups.npz", images=images, groups=np.arange(3))
    with pytest.raises(DataError, match=r"groups\.npz\['groups'\]: groups must hold one value per image, shape "
                                        r"\(4,\), got \(3,\)"):
        NumpyImages(str(tmp_path / "groups.npz"), groups_key="groups")


def test_contract_of_folder_digits_and_skimage_tiles(tmp_path):
    with pytest.warns(UserWarning):
        folder = ImageFolder(str(make_folder(tmp_path / "imgs")))
    assert folder.sample_kind == "image" and folder.summary() == {"files": 6}  # the broken file is not used
    digits = DigitsDataset()
    assert digits.sample_kind == "image" and digits.classes[7] == "7" and digits.summary() == {"files": 1}
    tiles = SkimageTiles(names=["camera", "astronaut", "coins"], tile=64, stride=64)
    assert tiles.sample_kind == "tile" and tiles.classes == ["camera", "astronaut", "coins"]
    assert tiles.group_kind == "image" and tiles.groups[0] == "camera" and tiles.groups[-1] == "coins"
    assert (tiles.groups == np.array(tiles.classes)[tiles.labels]).all()
    assert tiles.summary() == {"files": 3, "tiles per image": "24-64"}  # coins, 303 x 384: 4 x 6 tiles
