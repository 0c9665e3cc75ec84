"""Issue 13: ``crops_per_volume``: a few large volumes fill a batch; each sample is its own
crop, its group is its volume, and labels repeat per crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl.cli import main
from omnissl_ct.datasets import CTPhantoms, CTVolumes
from omnissl_ct.modality import CTModality, crop_starts
from omnissl_ct.phantom import make_phantom, write_nifti


@pytest.fixture
def two_volumes(tmp_path: Path) -> Path:
    """Two 40³ phantoms (2 mm), larger than the 16³ crops cut from them."""
    rng = np.random.default_rng(11)
    root = tmp_path / "two"
    for name in ("a", "b"):
        write_nifti(make_phantom(rng, (40, 40, 40), (2.0, 2.0, 2.0)), root / f"{name}.nii.gz")
    return root


def test_two_volumes_with_eight_crops_each_give_sixteen_samples_grouped_by_volume(two_volumes, tmp_path):
    dataset = CTVolumes(root=str(two_volumes), spacing=[2.0, 2.0, 2.0], crops_per_volume=8,
                        cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 16 and dataset.sample_kind == "crop" and dataset.group_kind == "volume"
    paths = [str(two_volumes / "a.nii.gz"), str(two_volumes / "b.nii.gz")]
    assert dataset.groups.tolist() == [paths[0]] * 8 + [paths[1]] * 8
    for i in range(16):
        sample = dataset[i]
        assert sample["path"] == paths[i // 8] and sample["crop_index"] == i % 8
    assert dataset.summary() == {"files": 2, "crops per volume": 8}
    with pytest.raises(IndexError):
        dataset[16]

    modality = CTModality(crop_size=16, patch_size=8)
    probe_crops = [modality.crop(dataset[i], None) for i in range(8)]  # no augmentation: fixed places
    assert torch.equal(probe_crops[0], modality.crop({"image": dataset[0]["image"]}, None))  # crop 0: centre
    assert all(torch.equal(c, modality.crop(dataset[i], None)) for i, c in enumerate(probe_crops))  # repeatable
    seeds = np.random.default_rng(0).integers(0, 2**63 - 1, size=8)  # the core draws one seed per sample
    train_crops = [modality.crop(dataset[i], np.random.default_rng(s)) for i, s in zip(range(8), seeds)]
    for crops in (probe_crops, train_crops):
        assert len({c.numpy().tobytes() for c in crops}) == 8  # eight different crops of one volume


def test_fixed_crop_places_are_distinct_centre_first_and_inside_the_volume():
    places = crop_starts([24, 24, 24], 8)
    assert places[0] == (12, 12, 12) and len(set(places)) == 8
    assert all(0 <= a <= 24 for p in places for a in p)
    assert sorted(set(p[0] for p in places)) == [6, 12, 18]  # middles of halves, off the edges
    assert crop_starts([24, 4, 0], 5) == [(12, 2, 0), (7, 2, 0), (17, 2, 0), (2, 2, 0), (22, 2, 0)]  # the roomiest axis
    assert len(set(crop_starts([2, 0, 0], 5))) == 3  # only three places: they repeat
    assert crop_starts([10, 10, 10], 1) == [(5, 5, 5)]


def test_phantom_labels_repeat_per_crop(tmp_path):
    dataset = CTPhantoms(n=3, shape=[24, 24, 24], real_volumes=False, crops_per_volume=4,
                         cache_dir=str(tmp_path))
    once = CTPhantoms(n=3, shape=[24, 24, 24], real_volumes=False, cache_dir=str(tmp_path))
    assert len(dataset) == 12 and len(once) == 3
    np.testing.assert_array_equal(dataset.labels, np.repeat(once.labels, 4))
    assert len(set(dataset.groups.tolist())) == 3 and dataset.groups.tolist() == np.repeat(once.groups, 4).tolist()


def test_a_batch_of_sixteen_trains_on_two_volumes(two_volumes, tmp_path):
    """Without crops_per_volume the split has 2 samples, fewer than one batch of 16."""
    out = tmp_path / "run"
    code = main(["train", "ct/mae-vit-base", f"data.root={two_volumes}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.spacing=[2.0,2.0,2.0]", "data.crops_per_volume=8", "data.val_fraction=0",
                 "data.num_workers=0",
                 "modality.crop_size=16", "modality.patch_size=8", "encoder.dim=32", "encoder.depth=1",
                 "encoder.heads=2", "objective.decoder_dim=16", "objective.decoder_depth=1",
                 "objective.decoder_heads=2", "train.steps=2", "train.batch_size=16", "train.micro_batch_size=16",
                 "train.precision=fp32", "train.log_every=1", "optim.warmup_steps=1", "viz.enabled=false",
                 "--out", str(out)])
    assert code in (0, None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-1] == 2
    summary = json.loads((out / "data.json").read_text())
    assert summary["samples"] == 16 and summary["sample_kind"] == "crop" and summary["files"] == 2
    assert summary["groups"] == {"kind": "volume", "count": 2}


def test_crops_read_the_cached_volume_through_a_memory_map(two_volumes, tmp_path, monkeypatch):
    """Each of a volume's crops reads the cache file itself (mapped, so a crop reads its own part),
    with the voxels the pipeline cached; a cleared cache entry is recomputed."""
    dataset = CTVolumes(root=str(two_volumes), spacing=[2.0, 2.0, 2.0], crops_per_volume=4,
                        cache_dir=str(tmp_path / "cache"))
    part = dataset.parts[0]
    assert all(file.is_file() for file in part.files) and len(set(part.files)) == 2
    expected = [part.volumes[i]["image"].numpy() for i in range(2)]

    class NotCalled:
        def __getitem__(self, index):
            raise AssertionError("a cached volume went through PersistentDataset again")

    monkeypatch.setattr(part, "volumes", NotCalled())
    for i in range(8):
        np.testing.assert_array_equal(dataset[i]["image"].numpy(), expected[i // 4])
    monkeypatch.undo()
    part.files[1].unlink()
    np.testing.assert_array_equal(dataset[5]["image"].numpy(), expected[1])
    assert part.files[1].is_file()  # written again


def test_held_out_split_keeps_each_volumes_crops_on_one_side(tmp_path):
    """The crops of one volume are near-duplicates: the held-out split takes whole volumes."""
    from omnissl.train.data import held_out_split

    dataset = CTPhantoms(n=10, shape=[24, 24, 24], real_volumes=False, crops_per_volume=3, cache_dir=str(tmp_path))
    for seed in range(3):
        split = held_out_split(dataset, 0.2, seed)
        assert split.info["kind"] == "grouped" and split.info["group_kind"] == "volume"
        assert not set(dataset.groups[split.train]) & set(dataset.groups[split.held_out])
        assert (split.info["held_out_groups"], split.info["groups_on_both_sides"]) == (2, 0)
        assert len(split.held_out) == 6  # two volumes, all three crops of each
