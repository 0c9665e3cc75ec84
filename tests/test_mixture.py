"""Data mixtures: sources of one modality sampled in proportion to their weights, through the loop's
own sampler; labels merged by class name; repeats kept on one side of the split; bad sources named."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnissl.build import build_dataset
from omnissl.datasets.mixture import Mixture
from omnissl.errors import DataError, RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.shards import write_shards
from omnissl.train import train
from omnissl.train.data import SeededBatchSampler, held_out_split


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits") / "shards"
    registry = get_registry()
    write_shards(load_recipe("image/mae-digits", [], registry), registry, folder, progress=False)
    return folder


def image_folder(root: Path, classes: dict[str, int]) -> str:
    """8x8 grey PNGs in one sub-folder per class (ImageFolder's labels are the folder names)."""
    rng = np.random.default_rng(len(classes))
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(root / name / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shares_follow_the_weights_through_the_loops_sampler(digit_shards, seed):
    sources = [{"name": "digits", "weight": 5, "tag": "a"}, {"name": "digits", "weight": 3, "tag": "b"},
               {"name": "shards", "path": str(digit_shards), "weight": 2}]
    mixture = Mixture(sources, length=1100, seed=seed)
    assert mixture.sources == ["a", "b", "shards"] and len(mixture) == 1100
    split = held_out_split(mixture, 0.1, seed)
    batches = iter(SeededBatchSampler(split.train, 100, seed))
    drawn = [mixture.source_of(i) for _ in range(10) for i, _ in next(batches)]  # 1,000 samples, as the loop draws
    shares = {tag: drawn.count(tag) / len(drawn) for tag in mixture.sources}
    for tag, weight in zip(mixture.sources, (0.5, 0.3, 0.2)):
        assert abs(shares[tag] - weight) <= 0.02, shares
    # every slot is a sample of its source, deterministically
    again = Mixture(sources, length=1100, seed=seed)
    assert (again.source_ids == mixture.source_ids).all() and (again.local == mixture.local).all()
    i = int(np.flatnonzero(mixture.source_ids == 2)[0])
    np.testing.assert_array_equal(mixture[i]["image"], mixture.datasets[2][int(mixture.local[i])]["image"])
    assert mixture.labels[i] == mixture.datasets[2].labels[mixture.local[i]]
    # a batch read in one go (each source asked once, shards from their chunks) is the samples one by one
    batch = [i for i, _ in next(batches)][:24]
    for got, index in zip(mixture.get_samples(batch), batch):
        np.testing.assert_array_equal(got["image"], mixture[index]["image"])
    stacks = mixture.get_stacks(batch)
    assert sorted(row for stack in stacks for row in stack.rows.tolist()) == list(range(len(batch)))
    for stack in stacks:
        for k, row in enumerate(stack.rows.tolist()):
            np.testing.assert_array_equal(stack.sample["image"][k], mixture[batch[row]]["image"])


def test_repeats_stay_on_one_side_and_classes_merge_by_name(tmp_path):
    first = image_folder(tmp_path / "one", {"cat": 6, "dog": 6})
    second = image_folder(tmp_path / "two", {"dog": 4, "emu": 4})
    mixture = Mixture([{"name": "image_folder", "root": first, "mode": "L", "weight": 1},
                       {"name": "image_folder", "root": second, "mode": "L", "weight": 3}], length=80)
    assert mixture.sources == ["image_folder-1", "image_folder-2"]
    assert mixture.classes == ["cat", "dog", "emu"]
    for i in range(len(mixture)):  # each label is the class its source names, by name
        source = mixture.datasets[mixture.source_ids[i]]
        assert mixture.classes[int(mixture.labels[i])] == source.classes[int(source.labels[mixture.local[i]])]
    # 60 slots for 8 samples of the second source: repeats share a group, so the split keeps them together
    split = held_out_split(mixture, 0.25, 0)
    assert split.info["kind"] == "grouped" and split.info["groups_on_both_sides"] == 0
    assert split.info["train_groups"] + split.info["held_out_groups"] == 20


def test_a_run_trains_on_a_mixture_and_says_what_it_mixed(digit_shards, tmp_path):
    registry = get_registry()
    recipe = load_recipe("image/mae-digits", [
        "data.name=mixture", f"data.sources=[{{name: digits, weight: 1}}, {{name: shards, path: '{digit_shards}', "
        f"weight: 1}}]", "data.length=400", "encoder.dim=32", "encoder.depth=1", "encoder.heads=2",
        "objective.decoder_dim=32", "objective.decoder_depth=1", "train.batch_size=32", "train.steps=2",
        "train.log_every=1", "train.val_every=2", "train.ckpt_every=2", "optim.warmup_steps=1",
        "probe.enabled=false", "viz.enabled=false"], registry)
    train(recipe, registry, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["samples"] == 400 and summary["sources"] == "digits 200 of 1,797, shards 200 of 1,797"
    assert summary["labels"]["task"] == "classification" and len(summary["labels"]["classes"]) == 10


def test_bad_sources_are_named(digit_shards, tmp_path):
    with pytest.raises(RecipeError, match=r"data.sources\[1\]: 'digits' has no option 'rooot'"):
        Mixture([{"name": "digits", "weight": 1}, {"name": "digits", "weight": 1, "rooot": "x"}])
    with pytest.raises(RecipeError, match=r"data.sources\[0\] must be a mapping with a name and a weight"):
        Mixture([{"name": "digits"}])
    with pytest.raises(RecipeError, match=r"data.sources\[0\].weight must be a positive number"):
        Mixture([{"name": "digits", "weight": 0}])
    with pytest.raises(RecipeError, match=r"set data.val_fraction on the mixture"):
        Mixture([{"name": "digits", "weight": 1, "val_fraction": 0.2}])
    with pytest.raises(DataError, match=f"data.path {tmp_path}/none: no such folder"):
        Mixture([{"name": "shards", "path": str(tmp_path / "none"), "weight": 1}])
    other = tmp_path / "other"
    shutil.copytree(digit_shards, other)
    meta = json.loads((other / "omnissl.json").read_text())
    (other / "omnissl.json").write_text(json.dumps(dict(meta, modality="splat")))
    with pytest.raises(DataError, match="different modalities"):
        Mixture([{"name": "shards", "path": str(digit_shards), "weight": 1},
                 {"name": "shards", "path": str(other), "weight": 1}])
    registry = get_registry()
    with pytest.raises(DataError, match="modality 'splat', but modality.name is 'image'"):
        build_dataset(load_recipe("image/mae-digits", ["data.name=mixture",
                                                       f"data.sources=[{{name: shards, path: '{other}', weight: 1}}]"],
                                  registry), registry)
