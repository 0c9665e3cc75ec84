"""The conformance kit's recipe check (ModalityConformance.test_shipped_recipes_train): every recipe
a plugin ships for its modality trains two tiny steps, and a recipe that does not is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from omnissl import hookimpl
from omnissl.plugins import load_plugins
from omnissl.recipe import load_yaml, recipe_index
from omnissl.testing import ModalityConformance, tiny_overrides
from omnissl_image import DigitsDataset, ImageModality


class KitToyModality(ImageModality):
    name = "kit_toy"


RECIPE = {"modality": {"name": "kit_toy", "image_size": 8, "patch_size": 2, "channels": 1, "hflip": False},
          "data": {"name": "digits", "val_fraction": 0.2, "num_workers": 4},
          "masker": {"name": "random", "ratio": 0.5},
          "encoder": {"name": "transformer", "size": "base"},  # shrunk by the kit
          "objective": {"name": "mae", "decoder_dim": 512, "decoder_depth": 8, "decoder_heads": 16},
          "optim": {"lr": 1.0e-3}, "train": {"steps": 100000, "batch_size": 256, "micro_batch_size": 64}}


def _plugin(recipes: Path) -> object:
    class KitToy:
        __name__ = "kit_toy_plugin"

        @hookimpl
        def omnissl_modalities(self) -> dict:
            return {"kit_toy": KitToyModality}

        @hookimpl
        def omnissl_recipe_dirs(self) -> list[Path]:
            return [recipes]

    return KitToy()


def _kit(tmp_path: Path, trains: bool = True, **bad: dict) -> ModalityConformance:
    folder = tmp_path / "recipes" / "kit_toy"
    folder.mkdir(parents=True)
    (folder / "good.yaml").write_text(yaml.safe_dump(RECIPE))
    for name, change in bad.items():
        recipe = {section: dict(options) for section, options in RECIPE.items()}
        for key, value in change.items():
            section, option = key.split(".")
            recipe[section][option] = value
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    registry = load_plugins(extra=[_plugin(tmp_path / "recipes")])

    class Kit(ModalityConformance):  # not collected: its name does not start with Test
        train_recipes = trains

        def make_modality(self):
            return KitToyModality(image_size=8, patch_size=2, channels=1, hflip=False)

        def make_dataset(self, tmp_path):
            return DigitsDataset()

        def make_registry(self):
            return registry

    return Kit()


def test_shipped_recipes_train_on_the_kit_data(tmp_path: Path) -> None:
    kit = _kit(tmp_path)
    kit.test_shipped_recipes_train(tmp_path / "kit")
    run = tmp_path / "kit" / "runs" / "kit_toy_good"
    assert (run / "checkpoints" / "last.pt").is_file()
    trained = yaml.safe_load((run / "recipe.yaml").read_text())  # the recipe the run trained: the tiny one
    assert trained["train"]["steps"] == 2 and trained["encoder"] == {"name": "transformer", "size": "base",
                                                                      "dim": 32, "depth": 1, "heads": 2}
    assert trained["objective"]["decoder_dim"] == 16 and trained["modality"] == RECIPE["modality"]


def test_a_recipe_that_does_not_train_is_named_with_its_error(tmp_path: Path) -> None:
    kit = _kit(tmp_path, diverges={"optim.lr": 1.0e30}, typo={"masker.ratoi": 0.5})
    with pytest.raises(AssertionError) as failed:
        kit.test_shipped_recipes_train(tmp_path / "kit")
    message = str(failed.value)
    assert "2 of 3 shipped 'kit_toy' recipes do not train" in message
    assert "kit_toy/typo: RecipeError:" in message and "has no option 'ratoi'" in message
    assert "kit_toy/diverges: TrainingError:" in message
    assert "kit_toy/good" not in message


def test_a_second_subclass_opts_out(tmp_path: Path) -> None:
    """``train_recipes = False`` removes the test from the subclass (no skip in its report)."""
    kit = _kit(tmp_path, trains=False)
    assert kit.test_shipped_recipes_train is None
    assert callable(_kit(tmp_path / "other").test_shipped_recipes_train)


def test_tiny_overrides_shrink_only_options_the_factories_have(tmp_path: Path) -> None:
    kit = _kit(tmp_path)
    registry = kit.make_registry()
    raw, _ = load_yaml(recipe_index(registry)["kit_toy/good"])
    overrides = tiny_overrides(raw, registry, 2)
    assert {"encoder.depth=1", "objective.decoder_dim=16", "train.steps=2", "train.micro_batch_size=null",
            "data.num_workers=0", "probe.enabled=false", "viz.enabled=false"} <= set(overrides)
    assert not any(o.startswith(("objective.pred_", "objective.out_dim")) for o in overrides)  # not MAE's options
