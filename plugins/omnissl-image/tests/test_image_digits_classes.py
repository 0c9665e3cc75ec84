"""The digits data set's class filter (``data.classes``), alone, in a recipe and in data.phases."""

import numpy as np
import pytest

from omnissl.build import build_dataset
from omnissl.errors import DataError, RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.research.phases import build_phases, parse_phases, split_phases
from omnissl_image import DigitsDataset


def test_classes_keep_those_digits_with_their_own_labels_and_positions():
    full = DigitsDataset()
    high = DigitsDataset(classes=[9, 5, 6, 7, 8])  # any order; kept in the data set's order
    assert high.kept == [5, 6, 7, 8, 9]
    expected = np.flatnonzero(full.labels >= 5)
    assert len(high) == len(expected) == int(np.isin(full.labels, [5, 6, 7, 8, 9]).sum())
    assert high.indices.tolist() == expected.tolist()
    assert high.labels.tolist() == full.labels[expected].tolist()  # a kept 7 is labelled 7, not 2
    assert set(high.labels.tolist()) == {5, 6, 7, 8, 9}
    assert high.classes == full.classes == [str(d) for d in range(10)]  # labels still index the ten names
    for i in (0, 17, len(high) - 1):
        assert np.array_equal(high[i]["image"], full[int(expected[i])]["image"])
    assert high.summary() == {"files": 1, "digits kept": "5, 6, 7, 8, 9"}
    assert full.summary() == {"files": 1} and full.kept is None and len(full) == 1797


@pytest.mark.parametrize("classes, message", [
    ([3, 12], r"data\.classes: \[12\] is not a class of the digits; the classes are 0-9"),
    ([-1, 10], r"data\.classes: \[-1, 10\] are not classes of the digits"),
    ([], r"data\.classes is empty"),
    ([1, 1, 2], r"data\.classes lists \[1\] more than once"),
    ([1.5], r"data\.classes must list digits as integers, got 1\.5"),
    ([True], r"data\.classes must list digits as integers, got True"),
    ("01234", r"data\.classes must be a list of digits"),
])
def test_classes_that_do_not_exist_are_refused_naming_the_key(classes, message):
    with pytest.raises(DataError, match=message):
        DigitsDataset(classes=classes)


def test_classes_through_a_recipe_and_its_phases():
    registry = get_registry()
    recipe = load_recipe("image/mae-digits", ["data.classes=[0, 1]"], registry)
    dataset = build_dataset(recipe, registry)
    assert set(dataset.labels.tolist()) == {0, 1} and len(dataset) == int(np.isin(DigitsDataset().labels, [0, 1]).sum())
    with pytest.raises(RecipeError, match=r"override 'data\.classes=\[12\]': data\.classes must be >= 0 and <= 9"):
        load_recipe("image/mae-digits", ["data.classes=[12]"], registry)  # the recipe's range check, before any build
    with pytest.raises(RecipeError, match="data.classes"):  # a wrong type is a recipe error before anything builds
        load_recipe("image/mae-digits", ["data.classes=low"], registry)

    phased = ["train.steps=4",
              "data.phases=[{classes: [0, 1, 2, 3, 4], steps: 2}, {classes: [5, 6, 7, 8, 9], steps: 2}]"]
    recipe = load_recipe("image/mae-digits", phased, registry)
    data = build_phases(parse_phases(recipe.raw["data"]), registry, recipe.source)
    split = split_phases(data, 0.2, 0, "auto")
    low, high = (set(data.labels[np.concatenate([split.train[p], split.held_out[p]])].tolist()) for p in (0, 1))
    assert low == {0, 1, 2, 3, 4} and high == {5, 6, 7, 8, 9} and len(data) == 1797
    bad = ["train.steps=4", "data.phases=[{classes: [0, 1], steps: 2}, {classes: [5, 12], steps: 2}]"]
    with pytest.raises(RecipeError, match=r"data\.phases\[1\]\.classes must be >= 0 and <= 9, got \[5, 12\]"):
        load_recipe("image/mae-digits", bad, registry)
    repeated = ["train.steps=4", "data.phases=[{classes: [0, 1], steps: 2}, {classes: [5, 5], steps: 2}]"]
    recipe = load_recipe("image/mae-digits", repeated, registry)  # in range: the data set refuses it, naming the phase
    with pytest.raises(DataError, match=r"data\.phases\[1\] .*data\.classes lists \[5\] more than once"):
        build_phases(parse_phases(recipe.raw["data"]), registry, recipe.source)
