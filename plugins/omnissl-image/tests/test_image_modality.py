import numpy as np
import torch

from omnissl import collate_tokens
from omnissl.maskers import RandomMasker
from omnissl.testing import ModalityConformance
from omnissl_image import DigitsDataset, ImageModality, SkimageTiles
from omnissl_image.modality import random_resized_crop_box


class TestImageConformance(ModalityConformance):
    def make_modality(self):
        return ImageModality(image_size=32, patch_size=8, channels=3)

    def make_dataset(self, tmp_path):
        return SkimageTiles(names=["camera"], tile=48, stride=96)


class TestDigitsConformance(ModalityConformance):
    train_recipes = False  # the image recipes train once, in TestImageConformance

    def make_modality(self):
        return ImageModality(image_size=8, patch_size=2, channels=1, hflip=False)

    def make_dataset(self, tmp_path):
        return DigitsDataset()


def test_tokens_and_inverse():
    modality = ImageModality(image_size=32, patch_size=8, channels=3, mean=[0.0] * 3, std=[1.0] * 3)
    image = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    tokens = modality.tokenize({"image": image}, None)
    assert tokens.values.shape == (16, 192) and tokens.coords.shape == (16, 2)
    assert torch.allclose(modality.to_pixels(tokens.values[None])[0], torch.from_numpy(image).permute(1, 2, 0))


def test_augmentation_is_seeded_and_varies():
    modality = ImageModality(image_size=32, patch_size=8)
    sample = SkimageTiles(names=["astronaut"], tile=64, stride=256)[0]
    a = modality.tokenize(sample, np.random.default_rng(1)).values
    b = modality.tokenize(sample, np.random.default_rng(1)).values
    c = modality.tokenize(sample, np.random.default_rng(2)).values
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_resized_crop_box_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(30, 50, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50 and h > 0 and w > 0


def test_visualize_writes_png(tmp_path):
    modality = ImageModality(image_size=8, patch_size=2, channels=1)
    dataset = DigitsDataset()
    batch = collate_tokens([modality.tokenize(dataset[i], None) for i in range(3)])
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    path = modality.visualize(batch, mask.hidden, {"values": torch.zeros_like(batch.values)}, tmp_path / "r.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
