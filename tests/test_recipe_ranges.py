"""Every numeric option of every registered component declares the values it may take (a Range),
and an out-of-range value is refused at validation, naming where it was set and the bound."""

from __future__ import annotations

import inspect
import types
import typing

import pytest

from omnissl.errors import RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import COMPONENTS, Range, factory_parameters, load_recipe, ranges_of

# Numeric options that rightly have no Range, each with the reason.
ALLOWED = {
    # Coordinate column indices: negative ones count from the last column, as in Python, and
    # the number of columns is only known from the tokens (checked when masking).
    ("maskers", "span", "axis"),  # default -1, the last column
    ("maskers", "block", "axes"),
    ("maskers", "multiblock", "axes"),
    ("maskers", "group", "coord_axes"),
    ("objectives", "ibot", "view_axes"),  # the views' coordinate columns, as multiblock's axes
}


def _numeric(annotation: typing.Any) -> bool:
    """Whether an annotation holds an int or a float anywhere (a list, dict or Optional of them)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _numeric(typing.get_args(annotation)[0])
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return False
    return any(_numeric(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)


def _options():
    """(kind, name, parameter name, inspect.Parameter) of every registered component."""
    registry = get_registry()
    for kind in COMPONENTS.values():
        for name in registry.names(kind):
            for param_name, param in factory_parameters(registry.get(kind, name), kind).items():
                if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                    continue
                yield kind, name, param_name, param


def _is_numeric_option(param: inspect.Parameter) -> bool:
    if param.annotation is inspect.Parameter.empty:  # unannotated: judge by the default
        default = param.default
        return isinstance(default, (int, float)) and not isinstance(default, bool)
    return _numeric(param.annotation)


def test_every_numeric_option_declares_its_range():
    missing, stale = [], []
    seen = set()
    for kind, name, param_name, param in _options():
        key = (kind, name, param_name)
        seen.add(key)
        if not _is_numeric_option(param):
            continue
        has_range = bool(ranges_of(param.annotation))
        if key in ALLOWED:
            if has_range:
                stale.append(key)
            continue
        if not has_range:
            missing.append(key)
    registered = {(kind, name) for kind, name, _, _ in _options()}
    gone = [key for key in ALLOWED if key[:2] in registered and key not in seen]
    assert not missing, (f"numeric options without a Range (annotate them, e.g. "
                         f"Annotated[float, Range(gt=0)]): {sorted(missing)}")
    assert not stale, f"these now have a Range: remove them from ALLOWED: {sorted(stale)}"
    assert not gone, f"ALLOWED names options that no longer exist: {sorted(gone)}"


def test_every_default_lies_in_its_range():
    bad = []
    for kind, name, param_name, param in _options():
        if param.default is inspect.Parameter.empty:
            continue
        for bounds in ranges_of(param.annotation):
            problem = bounds.problem(param.default)
            if problem:
                bad.append(f"{kind}/{name}.{param_name}: default {problem}")
    assert not bad, bad


@pytest.mark.parametrize("value,ok", [
    ({"xyz": 1.0, "scale": 0.0}, True),
    ({"xyz": -1.0}, False),
    ({"xyz": float("nan")}, False),
    ({"xyz": float("inf")}, False),
    ({"b": 2.0, "a": 1.0}, True),  # a mapping has no order to check
])
def test_range_checks_mapping_values(value, ok):
    assert (Range(ge=0, ascending=True).problem(value) is None) is ok


# (installed recipe, overrides that set up the case, the out-of-range override, the text of the bound)
CASES = [
    # core maskers
    ("image/mae-digits", [], "masker.ratio=1.5", "masker.ratio must be > 0 and < 1"),
    ("image/mae-digits", [], "masker.ratio=0", "masker.ratio must be > 0 and < 1"),
    ("image/mae-digits", [], "masker.ratio=.nan", "masker.ratio must be > 0 and < 1"),
    ("image/simmim-vit-base", [], "masker.min_size=0", "masker.min_size must be > 0"),
    ("image/simmim-vit-base", [], "masker.max_size=-2", "masker.max_size must be > 0"),
    ("image/mae-digits", ["masker.name=span"], "masker.span=0", "masker.span must be >= 1"),
    ("image/mae-digits", ["masker.name=group"], "masker.kinds_column=-1", "masker.kinds_column must be >= 0"),
    ("image/mae-digits", ["masker.name=group"], "masker.ratio=1", "masker.ratio must be > 0 and < 1"),
    # core encoder
    ("image/mae-digits", [], "encoder.heads=0", "encoder.heads must be >= 1"),
    ("image/mae-digits", [], "encoder.dim=0", "encoder.dim must be >= 1"),
    ("image/mae-digits", [], "encoder.depth=-1", "encoder.depth must be >= 1"),
    ("image/mae-digits", [], "encoder.mlp_ratio=0", "encoder.mlp_ratio must be > 0"),
    ("image/mae-digits", [], "encoder.drop_path=1.0", "encoder.drop_path must be >= 0 and < 1"),
    # core objective
    ("image/mae-digits", [], "objective.decoder_dim=0", "objective.decoder_dim must be >= 1"),
    ("image/mae-digits", [], "objective.decoder_depth=0", "objective.decoder_depth must be >= 1"),
    ("image/mae-digits", [], "objective.decoder_heads=0", "objective.decoder_heads must be >= 1"),
    ("image/mae-digits", [], "objective.mlp_ratio=-4", "objective.mlp_ratio must be > 0"),
    # image
    ("image/mae-digits", [], "modality.crop_scale=[1.5,0.1]",
     "modality.crop_scale must be > 0 and <= 1, in ascending order"),
    ("image/mae-digits", [], "modality.crop_scale=[0.9,0.2]",
     "modality.crop_scale must be > 0 and <= 1, in ascending order"),
    ("image/mae-digits", [], "modality.crop_ratio=[1.33,0.75]", "modality.crop_ratio must be > 0, in ascending order"),
    ("image/mae-digits", [], "modality.patch_size=0", "modality.patch_size must be >= 1"),
    ("image/mae-digits", [], "modality.image_size=-8", "modality.image_size must be >= 1"),
    ("image/mae-digits", [], "modality.channels=4", "modality.channels must be >= 1 and <= 3"),
    ("image/mae-digits", [], "modality.std=[0]", "modality.std must be > 0"),
    ("image/mae-digits", [], "modality.mean=[128]", "modality.mean must be >= 0 and <= 1"),
    ("image/mae-digits", ["data.name=skimage"], "data.tile=0", "data.tile must be >= 1"),
    ("image/mae-digits", ["data.name=skimage"], "data.stride=0", "data.stride must be >= 1"),
    # splat
    ("splat/mae-demo", [], "modality.num_groups=0", "modality.num_groups must be >= 1"),
    ("splat/mae-demo", [], "modality.group_size=0", "modality.group_size must be >= 1"),
    ("splat/mae-demo", [], "modality.embed_hidden=0", "modality.embed_hidden must be >= 1"),
    ("splat/mae-demo", [], "modality.loss_weights={xyz: -1.0, scale: 0.5}", "modality.loss_weights must be >= 0"),
    ("splat/mae-demo", [], "modality.loss_weights={xyz: .nan}", "modality.loss_weights must be >= 0"),
    ("splat/mae-demo", [], "modality.augment_scale=[1.25,0.8]",
     "modality.augment_scale must be > 0, in ascending order"),
    ("splat/mae-demo", [], "modality.augment_shift=-0.1", "modality.augment_shift must be >= 0"),
    ("splat/mae-demo", [], "data.per_class=0", "data.per_class must be >= 1"),
    ("splat/mae-demo", [], "data.num_gaussians=0", "data.num_gaussians must be >= 1"),
    ("splat/mae-demo", [], "data.seed=-1", "data.seed must be >= 0"),
    ("splat/mae-demo", [], "data.min_points=-5", "data.min_points must be >= 0"),
    ("splat/gaussian-mae-base", [], "data.min_points=-1", "data.min_points must be >= 0"),
    # ct
    ("ct/mae-demo", [], "modality.flip_prob=1.5", "modality.flip_prob must be >= 0 and <= 1"),
    ("ct/mae-demo", [], "modality.rotate_prob=-0.5", "modality.rotate_prob must be >= 0 and <= 1"),
    ("ct/mae-demo", [], "modality.crop_size=0", "modality.crop_size must be >= 1"),
    ("ct/mae-demo", [], "modality.patch_size=0", "modality.patch_size must be >= 1"),
    ("ct/mae-demo", [], "modality.baseline_pool=0", "modality.baseline_pool must be >= 1"),
    ("ct/mae-demo", [], "data.n=0", "data.n must be >= 1"),
    ("ct/mae-demo", [], "data.shape=[48,0,48]", "data.shape must be >= 1"),
    ("ct/mae-demo", [], "data.spacing=[2.0,-2.0,2.0]", "data.spacing must be > 0"),
    ("ct/mae-demo", [], "data.seed=-3", "data.seed must be >= 0"),
    ("ct/mae-demo", [], "data.hu_window=[240,-160]", "data.hu_window must be a finite number, in ascending order"),
    ("ct/mae-vit-base", [], "data.spacing=[1.5,0,1.5]", "data.spacing must be > 0"),
    ("ct/mae-vit-base", [], "data.hu_window=[-1000,.inf]", "data.hu_window must be a finite number"),
    ("ct/mae-vit-base", [], "data.foreground_hu=.inf", "data.foreground_hu must be a finite number"),
]


@pytest.mark.parametrize("recipe,setup,override,bound", CASES, ids=[c[2] for c in CASES])
def test_out_of_range_override_names_the_override_and_the_bound(recipe, setup, override, bound):
    registry = get_registry()
    load_recipe(recipe, setup, registry)  # the recipe (and the setup) is valid without the override
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, [*setup, override], registry)
    message = str(caught.value)
    assert f"command-line override '{override}'" in message, message
    assert bound in message, message


def test_numeric_detection():
    assert _numeric(typing.Annotated[float | None, Range(gt=0)])
    assert _numeric(dict[str, float]) and _numeric(list[int]) and _numeric(typing.Sequence[int] | None)
    assert not _numeric(bool) and not _numeric(str) and not _numeric(typing.Literal["a", "b"])
    assert not _numeric(list[str] | None) and not _numeric(types.NoneType)
