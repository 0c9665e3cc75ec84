"""The phantom generator: the label is the lesion's morphology, not its brightness."""

from __future__ import annotations

import numpy as np
import pytest

from omnissl_ct.phantom import FLUID_HU, LESION_HU, LESIONS, lesion_masks, make_phantom

SHAPE = (40, 40, 40)


def _grid() -> list[np.ndarray]:
    return np.meshgrid(*(np.arange(s, dtype=np.float32) for s in SHAPE), indexing="ij")


def _lesion(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    centre = np.full(3, (SHAPE[0] - 1) / 2, dtype=np.float32)
    return lesion_masks(kind, _grid(), centre, np.array([9.0, 8.0, 10.0]), np.random.default_rng(seed))


def test_each_lesion_type_has_its_own_shape():
    c = SHAPE[0] // 2
    solid, no_fluid = _lesion("solid")
    assert solid[c, c, c] and not no_fluid.any()
    shell, fluid = _lesion("hollow")
    assert fluid[c, c, c] and not shell[c, c, c]  # fluid inside a wall
    assert shell.sum() < 0.8 * solid.sum() and not (shell & fluid).any()
    lobes, _ = _lesion("lobulated")
    assert lobes[c, c, c] and lobes.sum() < solid.sum()
    mottled, _ = _lesion("mottled")
    assert not (mottled & ~solid).any() and 0.2 < mottled.sum() / solid.sum() < 0.8
    with pytest.raises(ValueError, match="solid, hollow"):
        _lesion("cystic")


def test_brightness_is_drawn_independently_of_the_label():
    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, SHAPE) for _ in range(80)]
    labels = np.array([p.label for p in phantoms])
    assert set(labels) == set(range(len(LESIONS)))
    for label in range(len(LESIONS)):
        brightness = [p.lesion_hu for p in phantoms if p.label == label]
        assert LESION_HU[0] <= min(brightness) and max(brightness) <= LESION_HU[1]
        assert max(brightness) - min(brightness) > 50.0  # every type comes in a range of brightness


def test_noise_free_phantom_shows_the_lesion_at_the_centre():
    rng = np.random.default_rng(3)
    found: dict[str, object] = {}
    for _ in range(60):
        p = make_phantom(rng, SHAPE, noise_hu=(0.0, 0.0), blur_voxels=0.0)
        found.setdefault(LESIONS[p.label], p)
    c = SHAPE[0] // 2
    assert found["solid"].hu[c, c, c] == pytest.approx(found["solid"].lesion_hu)
    assert found["hollow"].hu[c, c, c] == pytest.approx(FLUID_HU)


def test_noise_level_is_drawn_per_phantom_and_correlated():
    levels = []
    for seed in range(6):  # same seed: same anatomy and noise field, only the noise level differs
        clean = make_phantom(np.random.default_rng(seed), SHAPE, noise_hu=(0.0, 0.0))
        noisy = make_phantom(np.random.default_rng(seed), SHAPE)
        noise = noisy.hu - clean.hu
        levels.append(noise.std())
        neighbours = np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]
        assert neighbours > 0.2  # the reconstruction kernel correlates neighbouring voxels
    assert 20.0 <= min(levels) and max(levels) <= 60.0 and max(levels) - min(levels) > 10.0
