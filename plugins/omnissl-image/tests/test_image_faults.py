"""Issue 12: NaN/inf pixels never reach training, a JPEG cut short after its header is skipped
and counted (never replaced by another file under its label), and skimage names are limited
to the images bundled with the package (never a download at run time)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnissl.errors import DataError
from omnissl_image import ImageFolder, NumpyImages, SkimageTiles


# --- numpy: non-finite pixels ---------------------------------------------------------------

def _images_with_bad_samples(path: Path, bad: dict[int, float], dtype=np.float32) -> np.ndarray:
    images = np.random.default_rng(0).random((12, 8, 8, 3)).astype(dtype)
    for index, value in bad.items():
        images[index, 2, 3, 1] = value
    np.savez(path, images=images, labels=np.arange(12) % 4)
    return images


def test_numpy_samples_with_nan_or_inf_pixels_are_skipped_by_index_and_counted(tmp_path: Path) -> None:
    file = tmp_path / "set.npz"
    images = _images_with_bad_samples(file, {3: np.nan, 7: np.inf, 10: -np.inf})
    with pytest.warns(UserWarning) as record:
        dataset = NumpyImages(str(file))
    message = "\n".join(str(w.message) for w in record)
    assert f"{file}['images']" in message and "first: index 3" in message and "3 of 12" in message
    assert [where for where, _ in dataset.skipped] == [f"{file}['images'][{i}]" for i in (3, 7, 10)]
    assert all("NaN or infinite" in reason for _, reason in dataset.skipped)
    kept = [i for i in range(12) if i not in (3, 7, 10)]
    assert len(dataset) == 9 and dataset.labels.tolist() == [i % 4 for i in kept]  # labels stay with their images
    served = np.stack([dataset[i]["image"] for i in range(len(dataset))])
    assert np.isfinite(served).all()
    np.testing.assert_array_equal(served[3], images[kept[3]].transpose(2, 0, 1))


def test_numpy_float64_pixels_beyond_float32_count_as_infinite(tmp_path: Path) -> None:
    """1e300 is finite in the file and inf in the float32 the sample is served as."""
    file = tmp_path / "set.npz"
    _images_with_bad_samples(file, {5: 1e300}, dtype=np.float64)
    with pytest.warns(UserWarning, match="first: index 5"):
        dataset = NumpyImages(str(file))
    assert len(dataset) == 11 and np.isfinite(np.stack([dataset[i]["image"] for i in range(11)])).all()


def test_numpy_strict_names_file_key_and_first_bad_index(tmp_path: Path) -> None:
    file = tmp_path / "set.npz"
    _images_with_bad_samples(file, {4: np.nan, 9: np.nan})
    with pytest.raises(DataError, match=r"set\.npz\['images'\]\[4\].*NaN or infinite"):
        NumpyImages(str(file), strict=True)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.where(np.arange(6)[:, None, None] == 2, np.nan, np.ones((6, 4, 4))))
    with pytest.raises(DataError, match=r"plain\.npy\[2\]"):
        NumpyImages(str(npy), strict=True)


def test_numpy_all_samples_bad_is_a_data_error(tmp_path: Path) -> None:
    np.save(tmp_path / "nan.npy", np.full((3, 4, 4), np.nan, np.float32))
    with pytest.raises(DataError, match=r"every one of the 3 images in .*nan\.npy .*first: index 0"):
        NumpyImages(str(tmp_path / "nan.npy"))


# --- image folder: a JPEG that passes verify() but does not decode --------------------------------

def _folder_with_truncated_jpeg(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for label, level in (("cats", 40), ("dogs", 200)):  # a label is recognisable from its pixels
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = np.clip(level + rng.integers(-20, 20, (32, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.jpg", quality=90)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    (root / "dogs" / "zz_truncated.jpg").write_bytes(data[: len(data) // 3])  # sorts last: the old code's
    return root / "dogs" / "zz_truncated.jpg"                                # fallback was index 0, a cat


def test_truncated_jpeg_passes_verify_but_is_skipped_by_name_and_counted(tmp_path: Path) -> None:
    broken = _folder_with_truncated_jpeg(tmp_path / "imgs")
    with Image.open(broken) as image:
        image.verify()  # what the old index relied on: it raises nothing here
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dataset = ImageFolder(str(tmp_path / "imgs"))  # the record of decoded files goes to $OMNISSL_CACHE
        samples = [dataset[index] for index in range(len(dataset))]
    for index, sample in enumerate(samples):  # every sample is its own file, under its own folder's label
        path = Path(sample["path"])
        assert dataset.classes[dataset.labels[index]] == path.parent.name, f"sample {index} has a wrong label"
        assert path == dataset.files[index]
        assert (float(sample["image"].mean()) < 0.5) == (path.parent.name == "cats")
    messages = "\n".join(str(w.message) for w in record)
    assert "skipping unreadable image" in messages and "zz_truncated.jpg" in messages
    assert [(path.name, "cannot be decoded" in reason) for path, reason in dataset.skipped] == \
        [("zz_truncated.jpg", True)]
    assert len(dataset) == 6 and broken not in dataset.files


def test_strict_makes_the_truncated_jpeg_fatal(tmp_path: Path) -> None:
    _folder_with_truncated_jpeg(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"zz_truncated\.jpg.*cannot be decoded"):
        ImageFolder(str(tmp_path / "imgs"), strict=True, cache_dir=str(tmp_path / "cache"))


def test_decoded_files_are_recorded_so_a_later_run_does_not_decode_them_again(tmp_path: Path, monkeypatch) -> None:
    from omnissl_image import datasets

    _folder_with_truncated_jpeg(tmp_path / "imgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    record = json.loads(next((tmp_path / "cache").glob("decoded-*.json")).read_text())
    assert sorted(record) == sorted(f"{c}/{i}.jpg" for c in ("cats", "dogs") for i in range(3))
    decoded = []
    real = datasets._decode_error
    monkeypatch.setattr(datasets, "_decode_error", lambda path: decoded.append(path.name) or real(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = ImageFolder(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    assert decoded == ["zz_truncated.jpg"] and len(again) == 6 and len(again.skipped) == 1


def test_file_broken_after_indexing_raises_naming_it_instead_of_substituting(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_with_truncated_jpeg(root)
    (root / "dogs" / "zz_truncated.jpg").unlink()
    dataset = ImageFolder(str(root), cache_dir=str(tmp_path / "cache"))
    victim = dataset.files[4]
    victim.write_bytes(victim.read_bytes()[:400])
    with pytest.raises(DataError, match=rf"{victim.name}.*cannot be decoded now"):
        dataset[4]


# --- skimage: only bundled images ------------------------------------------------------------

def test_skimage_names_that_would_download_are_refused_listing_the_allowed(monkeypatch) -> None:
    import skimage.data

    def no_downloads(*args, **kwargs):
        raise AssertionError("skimage tried to download")

    monkeypatch.setattr(skimage.data, "download_all", no_downloads)
    monkeypatch.setattr(skimage.data._fetchers, "_image_fetcher", None)  # a fetch attempt would now fail loudly
    for bad in ("download_all", "cells3d", "kidney", "data_dir", "stereo_motorcycle", "no_such_image"):
        with pytest.raises(DataError, match=rf"\['{bad}'\].*bundled.*choose from .*astronaut.*camera") as info:
            SkimageTiles(names=["camera", bad])
        assert "coffee" in str(info.value)


def test_skimage_bundled_images_exist_in_the_package_and_defaults_are_among_them() -> None:
    from omnissl_image.datasets import bundled_skimage_images

    bundled = bundled_skimage_images()
    assert set(SkimageTiles.DEFAULT) <= set(bundled)
    assert not {"download_all", "cells3d", "kidney", "lily", "brain", "data_dir"} & set(bundled)
    assert all(path.is_file() and "skimage" in path.parts for path in bundled.values())
    tiles = SkimageTiles(names=["camera", "coins"], tile=64, stride=128)
    assert len(tiles) > 0 and set(tiles.labels.tolist()) == {0, 1}


def test_skimage_names_must_be_a_list() -> None:
    with pytest.raises(DataError, match="must be a list"):
        SkimageTiles(names="camera")


def test_numpy_groups_stay_with_their_images_when_bad_samples_are_skipped(tmp_path: Path) -> None:
    file = tmp_path / "set.npz"
    images = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    images[2, 0, 0] = np.nan
    np.savez(file, pixels=images, target=np.arange(6), scan=np.array([f"scan{i}" for i in range(6)]))
    with pytest.warns(UserWarning, match=r"set\.npz\['pixels'\] .*first: index 2"):
        dataset = NumpyImages(str(file), images_key="pixels", labels_key="target", groups_key="scan")
    assert dataset.labels.tolist() == [0, 1, 3, 4, 5]
    assert dataset.groups.tolist() == [f"scan{i}" for i in (0, 1, 3, 4, 5)]
    assert dataset.skipped[0][0] == f"{file}['pixels'][2]"
