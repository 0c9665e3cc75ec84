from pathlib import Path

import pytest
import yaml

from omnissl.errors import RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import apply_overrides, header_command, load_recipe, parse_override, recipe_index

GOOD = """\
# omnissl train toy.yaml
modality: {name: image, image_size: 8, patch_size: 2, channels: 1}
data: {name: digits, val_fraction: 0.2}
masker: {name: random, ratio: 0.5}
encoder: {name: transformer, size: tiny, dim: 32, depth: 1, heads: 2}
objective: {name: mae, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2}
optim: {lr: 0.001}
train: {steps: 3, batch_size: 16}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(recipe_index(get_registry())))
def test_every_installed_recipe_validates(name):
    recipe = load_recipe(name, [], get_registry())
    assert header_command(Path(recipe.source)).startswith(f"omnissl train {name}")


def test_overrides_apply_and_parse_yaml(tmp_path):
    recipe = load_recipe(str(write(tmp_path, GOOD)), ["train.steps=7", "optim.betas=[0.8, 0.9]",
                                                     "masker.ratio=0.6"], get_registry())
    assert recipe.train.steps == 7 and recipe.optim.betas == [0.8, 0.9]
    assert recipe.component("masker") == ("random", {"ratio": 0.6})


@pytest.mark.parametrize("override,pattern", [
    ("train.stesp=3",
     r"toy.yaml, command-line override 'train.stesp=3': unknown key train.stesp. Did you mean 'steps'\?"),
    ("trian.steps=3", r"unknown section 'trian'. Did you mean 'train'\?"),
    ("masker.ratoi=0.5", r"'random' \(masker\) has no option 'ratoi'. Did you mean 'ratio'\?"),
    ("train.steps=many", r"train.steps must be int, got 'many'"),
    ("masker.ratio=high", r"masker.ratio must be float, got 'high'"),
    ("data.val_fraction=2.0", r"data.val_fraction must be >= 0 and < 1, got 2.0"),
    ("probe.pool=cls", r"probe.pool must be one of 'mean', 'max', 'mean_max' \(or null\), got 'cls'"),
    ("probe.metric=f1", r"probe.metric must be one of 'auto', 'accuracy', 'balanced_accuracy', 'r2', 'rmse', got 'f1'"),
    ("train.precision=fp16", r"train.precision must be one of 'auto', 'bf16', 'fp32', got 'fp16'"),
    ("train.batch_size=10", r"train.batch_size \(10\) must be a multiple"),
])
def test_mistakes_name_file_key_and_closest(tmp_path, override, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(str(write(tmp_path, GOOD)), [override, "train.micro_batch_size=4"]
                    if "batch_size" in override else [override], get_registry())


def test_errors_give_the_line(tmp_path):
    text = GOOD.replace("train: {steps: 3, batch_size: 16}", "train:\n  steps: 3\n  batch_size: 16\n  sedd: 1")
    with pytest.raises(RecipeError, match=r"toy.yaml, line 11: unknown key train.sedd. Did you mean 'seed'\?"):
        load_recipe(str(write(tmp_path, text)), [], get_registry())


def test_unknown_component_and_recipe_names(tmp_path):
    with pytest.raises(Exception, match="Did you mean 'random'"):
        load_recipe(str(write(tmp_path, GOOD)), ["masker.name=randm"], get_registry())
    with pytest.raises(RecipeError, match="Did you mean 'image/mae-digits'"):
        load_recipe("image/mae-digit", [], get_registry())


def test_override_syntax():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    with pytest.raises(RecipeError, match="key.sub=value"):
        parse_override("train.steps")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(write(tmp_path, "modality: !!python/object/apply:os.system ['true']\n")), [],
                    get_registry())
    assert yaml.safe_load(GOOD)["train"]["steps"] == 3


def test_a_typo_in_a_core_section_is_refused_before_torch_is_imported():
    # The core sections are checked before the components' factories are imported (torch, timm,
    # the plugins' field libraries: seconds), so `omnissl train RECIPE train.stepz=3` fails at once.
    import subprocess
    import sys

    code = ("import sys\n"
            "from omnissl.errors import RecipeError\n"
            "from omnissl.plugins import get_registry\n"
            "from omnissl.recipe import load_recipe\n"
            "try:\n"
            "    load_recipe('image/mae-digits', ['train.stepz=3'], get_registry())\n"
            "except RecipeError as exc:\n"
            "    print('refused:', 'train.stepz' in str(exc), 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "refused: True False", result.stdout + result.stderr
