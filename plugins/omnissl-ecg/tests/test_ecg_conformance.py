"""The core's conformance checks (omnissl.testing) on real records of 1, 3, 8 and 12 leads, and the
token layout: one token per lead per patch, placed by lead direction and time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.maskers import RandomMasker
from omnissl.testing import ModalityConformance
from omnissl_ecg import ECGFolder, ECGModality
from omnissl_ecg.leads import DIRECTIONS, KIND_VOCAB, LEADS, OTHER


class TestECGConformance(ModalityConformance):
    """Mixed lead sets: a batch pads 1-lead windows to the 12-lead ones' token count."""

    recipe_overrides = ("modality.sfreq=250.0",)  # the shipped recipes train on these 250 Hz windows

    @pytest.fixture(autouse=True)
    def _records(self, mixed_folder):
        self.folder = mixed_folder  # the session's real records (conftest.py)

    def make_modality(self):
        return ECGModality(sfreq=250.0, patch_seconds=0.1)

    def make_dataset(self, tmp_path):
        return _mixed(self.folder, tmp_path / "cache")


def _mixed(folder, cache):
    return ECGFolder(str(folder), cache_dir=str(cache), sfreq=250.0, window_seconds=4.0)


def test_ecg_tokens_one_per_lead_and_patch(mixed_folder, tmp_path):
    modality = ECGModality(sfreq=250.0, patch_seconds=0.1)
    data = _mixed(mixed_folder, tmp_path / "cache")
    by_leads = {len(data[i]["leads"]): data[i] for i in range(len(data))}
    assert sorted(by_leads) == [1, 3, 8, 12]
    three = modality.tokenize(by_leads[3], None)  # I, II, V2; 4 s at 250 Hz in 0.1 s patches: 40 each
    assert three.values.shape == (3 * 40, 25) and three.values.dtype == torch.float32
    assert three.kinds[:, 0].tolist() == [0] * 40 + [1] * 40 + [7] * 40
    assert three.coords[:, 3].tolist() == list(range(40)) * 3
    assert torch.allclose(three.coords[40, :3], torch.from_numpy(DIRECTIONS[1]))  # II: 60 degrees, frontal
    assert torch.allclose(three.values[40:80].reshape(-1), torch.from_numpy(by_leads[3]["signal"][1]))
    three.validate(modality.spec())
    batch = collate_tokens([modality.tokenize(by_leads[n], None) for n in (1, 3, 8, 12)])
    assert batch.values.shape == (4, 12 * 40, 25) and batch.pad.sum(1).tolist() == [11 * 40, 9 * 40, 4 * 40, 0]
    batch.validate(modality.spec())


def test_ecg_lead_directions():
    assert DIRECTIONS.shape == (KIND_VOCAB, 3) and np.allclose(DIRECTIONS[OTHER], 0)
    assert np.allclose(np.linalg.norm(DIRECTIONS[:OTHER], axis=1), 1)
    angle = np.degrees(np.arccos(DIRECTIONS[LEADS.index("II")] @ DIRECTIONS[LEADS.index("aVF")]))
    assert abs(angle - 30) < 1e-4  # neighbours on the hexaxial wheel
    assert abs(DIRECTIONS[LEADS.index("V1")] @ DIRECTIONS[LEADS.index("I")] + 0.5) < 1e-6  # V1 at 120 degrees


def test_ecg_visualize_and_baseline(mixed_folder, tmp_path):
    modality = ECGModality(sfreq=250.0, patch_seconds=0.1)
    data = _mixed(mixed_folder, tmp_path / "cache")
    samples = [data[i] for i in range(len(data))]
    batch = collate_tokens([modality.tokenize(s, None) for s in samples[:3]])
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    path = modality.visualize(batch, mask.hidden, {"values": torch.zeros_like(batch.values)}, tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    features = [modality.baseline_features(s) for s in samples]
    assert {f.shape for f in features} == {(40,)} and all(np.isfinite(f).all() for f in features)
