"""Recipes: one YAML file names everything a run needs, validated before anything heavy starts.

A recipe has fixed sections (``optim``, ``train``, ``probe``, ``viz``) with a
schema below, and component sections (``modality``, ``data``, ``masker``,
``encoder``, ``objective``) whose ``name`` picks a registered component and
whose other keys are that component's keyword arguments, checked against its
signature. ``key.sub=value`` overrides from the command line are applied
before validation; values are parsed as YAML (``train.steps=100``,
``optim.betas=[0.9,0.95]``).
"""

from __future__ import annotations

import collections.abc
import copy
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import yaml

from omnissl.errors import RecipeError
from omnissl.plugins import Registry, resolve

@dataclass(frozen=True)
class Range:
    """The values a numeric recipe option may take, checked before anything heavy starts.

    Used as ``typing.Annotated`` metadata on a dataclass field or a component factory's
    parameter (``ratio: Annotated[float, Range(gt=0, lt=1)]``). It applies to a number, to
    every number of a list and to every number among a mapping's values (``{xyz: 1.0, ...}``
    weights); ``ascending`` asks a list to be non-decreasing (a ``[low, high]`` range). NaN
    never passes, and infinity only where ``finite=False``. ``None`` is not checked (the
    annotation's type decides whether it is allowed).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True
    ascending: bool = False

    def describe(self) -> str:
        parts = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                       ("<", self.lt)) if bound is not None]
        text = " and ".join(parts) if parts else "a finite number"
        return text + (", in ascending order" if self.ascending else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else what is wrong with it."""
        if value is None:
            return None
        if isinstance(value, dict):
            numbers = list(value.values())
        else:
            numbers = list(value) if isinstance(value, (list, tuple)) else [value]
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue  # the type check speaks about non-numbers
            if math.isnan(number) or (self.finite and math.isinf(number)):
                return f"must be {self.describe()}, got {value!r}"
            if ((self.ge is not None and number < self.ge) or (self.gt is not None and number <= self.gt)
                    or (self.le is not None and number > self.le) or (self.lt is not None and number >= self.lt)):
                return f"must be {self.describe()}, got {value!r}"
        if self.ascending and not isinstance(value, dict) and any(b < a for a, b in zip(numbers, numbers[1:])):
            return f"must be {self.describe()}, got {value!r}"
        return None


def ranges_of(annotation: Any) -> list[Range]:
    """The :class:`Range` metadata of an ``Annotated`` annotation (none for a plain one)."""
    if typing.get_origin(annotation) is Annotated:
        return [m for m in annotation.__metadata__ if isinstance(m, Range)]
    return []


def _plain(annotation: Any) -> Any:
    """The annotation without ``Annotated`` metadata."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


COMPONENTS = {"modality": "modalities", "data": "datasets", "masker": "maskers", "encoder": "encoders",
              "objective": "objectives"}
# Keys of component sections that the core consumes itself (not passed to the factory).
CORE_KEYS = {"data": {"val_fraction": Annotated[float, Range(ge=0, lt=1)], "num_workers": Annotated[int, Range(ge=0)],
                      "split": Literal["auto", "random", "grouped", "given", "scaffold"],
                      "split_seed": Annotated[int | None, Range(ge=0)]}}
CORE_DEFAULTS = {"data": {"val_fraction": 0.1, "num_workers": 0, "split": "auto", "split_seed": None}}
# Keys of the data section that the research tools consume (docs/research.md): the training
# split restricted to a list of samples, phases trained in sequence, the replay of earlier phases,
# and whether the learning-rate schedule runs once over all phases or again in each.
RESEARCH_KEYS = {"data": {"subset": str | None, "phases": list[dict] | None,
                          "replay": Annotated[float, Range(ge=0, lt=1)], "replay_size": Annotated[int, Range(ge=1)],
                          "phase_schedule": Literal["continue", "restart"]}}
# Leading positional parameters the core passes to factories, never set from a recipe.
INJECTED = {"encoders": ("spec", "modality"), "objectives": ("encoder", "modality")}


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay."""

    lr: Annotated[float | None, Range(gt=0)] = None  # absolute peak learning rate
    # peak lr per 256 samples (MAE's rule): lr = base_lr * batch_size / 256
    base_lr: Annotated[float | None, Range(gt=0)] = None
    weight_decay: Annotated[float, Range(ge=0)] = 0.05
    betas: Annotated[list[float], Range(ge=0, lt=1)] = field(default_factory=lambda: [0.9, 0.95])
    eps: Annotated[float, Range(gt=0)] = 1e-8
    warmup_steps: Annotated[int, Range(ge=0)] = 0
    min_lr: Annotated[float, Range(ge=0)] = 0.0
    # layer-wise lr decay (BEiT; MAE fine-tuning): block i of L gets lr * layer_decay^(L + 1 - i),
    # the embeddings layer_decay^(L + 1), what follows the encoder (heads) the full lr; 1: off
    layer_decay: Annotated[float, Range(gt=0, le=1)] = 1.0


@dataclass
class TrainConfig:
    steps: Annotated[int, Range(ge=1)] = 1000
    batch_size: Annotated[int, Range(ge=1)] = 64  # effective batch per optimiser step
    # per forward; batch_size / micro_batch_size accumulation steps
    micro_batch_size: Annotated[int | None, Range(ge=1)] = None
    clip_grad: Annotated[float | None, Range(gt=0)] = 1.0  # max gradient norm; null: no clipping
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    compile: bool = False
    # several processes (torchrun / --nproc): auto = DDP when there are several, else one process;
    # fsdp shards the objective per transformer block (docs/distributed.md)
    strategy: Literal["auto", "single", "ddp", "fsdp"] = "auto"
    seed: Annotated[int, Range(ge=0)] = 0
    device: str = "auto"  # auto (CUDA, then CPU), cpu, cuda, cuda:N
    log_every: Annotated[int, Range(ge=1)] = 10
    val_every: Annotated[int, Range(ge=0)] = 100  # 0: validate at the end only
    val_batches: Annotated[int, Range(ge=1)] = 4
    ckpt_every: Annotated[int, Range(ge=1)] = 200
    # also keep checkpoints/step-<s>.pt (the encoder) every N steps, for `omnissl probe --all-checkpoints`
    keep_checkpoints: Annotated[int | None, Range(ge=1)] = None


PoolName = Literal["mean", "max", "mean_max"]  # how probes pool token features (TokenEncoder.pool)


@dataclass
class ProbeConfig:
    enabled: bool = True
    knn_k: Annotated[int, Range(ge=1)] = 20
    # auto: accuracy (classification) / r2 (regression)
    metric: Literal["auto", "accuracy", "balanced_accuracy", "r2", "rmse"] = "auto"
    max_samples: Annotated[int, Range(ge=2)] = 20000
    batch_size: Annotated[int, Range(ge=1)] = 128
    seed: Annotated[int, Range(ge=0)] = 0
    # how token features are pooled; default (null): the modality's own readout (Modality.readout)
    pool: PoolName | None = None


@dataclass
class VizConfig:
    enabled: bool = True
    num_samples: Annotated[int, Range(ge=1)] = 8


SECTIONS: dict[str, type] = {"optim": OptimConfig, "train": TrainConfig, "probe": ProbeConfig, "viz": VizConfig}
# ``finetune:`` holds ``key.sub: value`` overrides that ``omnissl finetune`` applies on top of its
# fine-tuning defaults (a recipe's own settings for fine-tuning its encoder: steps, mixup, ...).
TOP_KEYS = ["description", *COMPONENTS, *SECTIONS, "finetune"]


@dataclass
class Recipe:
    """A validated recipe. Component sections stay dicts; fixed sections become dataclasses."""

    source: str
    raw: dict[str, Any]
    optim: OptimConfig
    train: TrainConfig
    probe: ProbeConfig
    viz: VizConfig

    def component(self, section: str) -> tuple[str, dict[str, Any]]:
        """(name, factory keyword arguments) of a component section."""
        options = dict(self.raw[section])
        name = options.pop("name")
        for key in (*CORE_KEYS.get(section, {}), *RESEARCH_KEYS.get(section, {})):
            options.pop(key, None)
        return name, options

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.raw.get(section, {}).get(key, default)


# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent, so `lr: 1e-3` would be
# the string "1e-3"; YAML 1.2, and every other parser, reads the number every user means.
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+")


def _numbers(value: Any) -> Any:
    """``value`` with the exponent floats YAML 1.1 leaves as strings read as numbers."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        return float(value.replace("_", ""))
    return value


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` (no tags that build Python objects), reading ``1e-3`` as a number."""
    return _numbers(yaml.safe_load(text))


def _closest(key: str, choices: Sequence[str]) -> str:
    hint = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {hint[0]!r}?" if hint else f" Valid keys: {', '.join(sorted(choices))}."


class _Lines:
    """Where each key of a recipe came from, for error messages: a line of the file or an override."""

    def __init__(self, text: str | None, overrides: Sequence[str] = ()):
        self.lines: dict[str, int] = {}
        self.overrides = {text.split("=", 1)[0]: text for text in overrides}
        if text:
            try:
                self._walk(yaml.compose(text), "")
            except yaml.YAMLError:
                pass

    def _walk(self, node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = f"{prefix}{key_node.value}"
                self.lines[path] = key_node.start_mark.line + 1
                self._walk(value_node, path + ".")

    def where(self, source: str, key: str) -> str:
        if key in self.overrides:
            return f"{source}, command-line override {self.overrides[key]!r}"
        line = self.lines.get(key)
        return f"{source}, line {line}" if line else source


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed value)."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like key.sub=value (for example train.steps=100)")
    key, value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {text!r} has an empty key")
    try:
        parsed = yaml_load(value) if value != "" else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def load_yaml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror}") from exc
    try:
        raw = yaml_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    return raw, text


def _check_type(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a (resolved) type annotation; YAML lists stand for any sequence."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    annotation = _plain(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list):
            return False
        return all(_check_type(v, args[0]) for v in value) if args else True  # tuple[X, ...] too
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation we cannot check (a protocol, a forward reference)


def _type_name(annotation: Any) -> str:
    annotation = _plain(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # Optional[X]: X, or null
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(annotation))
        return " or ".join(_type_name(a) for a in options) + (" (or null)" if nullable else "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to no checking
        return {}


def factory_parameters(factory: Callable[..., Any], kind: str) -> dict[str, inspect.Parameter]:
    """Keyword arguments a recipe may set for ``factory`` (None when it takes **kwargs).

    A factory registered with :func:`omnissl.plugins.lazy` is imported here: its signature,
    type hints and ``Range`` bounds are the imported class's or function's.
    """
    factory = resolve(factory)
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = _hints(target)
    params = {name: p.replace(annotation=hints.get(name, inspect.Parameter.empty))
              for name, p in inspect.signature(target).parameters.items()}
    params.pop("self", None)
    for name in INJECTED.get(kind, ()):
        params.pop(name, None)
    return params


def _check_value(value: Any, annotation: Any, key: str, where: str) -> None:
    """The type and range of one option, or a :class:`RecipeError` naming it and where it was set."""
    if not _check_type(value, annotation):
        raise RecipeError(f"{where}: {key} must be {_type_name(annotation)}, got {value!r}")
    for bounds in ranges_of(annotation):
        problem = bounds.problem(value)
        if problem:
            raise RecipeError(f"{where}: {key} {problem}")
    for number in (value if isinstance(value, list) else [value]):
        if isinstance(number, float) and math.isnan(number):  # no option means "not a number"
            raise RecipeError(f"{where}: {key} must be a number, got {value!r}")


def validate(raw: dict[str, Any], registry: Registry, source: str = "<recipe>", text: str | None = None,
             overrides: Sequence[str] = ()) -> Recipe:
    """Check every key, type and range; return a :class:`Recipe` or raise :class:`RecipeError`.

    ``overrides`` (``key.sub=value`` texts) let messages name the command line, not the file's
    line, for keys set there.
    """
    lines = _Lines(text, overrides)
    for key in raw:
        if key not in TOP_KEYS:
            raise RecipeError(f"{lines.where(source, key)}: unknown section {key!r}.{_closest(key, TOP_KEYS)}")
    tune = raw.get("finetune")
    if tune is not None and (not isinstance(tune, dict) or any("." not in str(k) for k in tune)):
        raise RecipeError(f"{lines.where(source, 'finetune')}: section 'finetune' must map dotted keys to values "
                          f"(train.steps: 300, objective.mixup: 0.8), got {tune!r}")
    # The core sections first: checking them imports nothing, while a component's options need its
    # factory's signature, which imports its module (torch, timm, the plugin's field library).
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        options = raw.get(section) or {}
        if not isinstance(options, dict):
            raise RecipeError(f"{lines.where(source, section)}: section {section!r} must be a mapping")
        known = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls, include_extras=True)
        for key, value in options.items():
            where = lines.where(source, f"{section}.{key}")
            if key not in known:
                raise RecipeError(f"{where}: unknown key {section}.{key}.{_closest(key, list(known))}")
            _check_value(value, hints[key], f"{section}.{key}", where)
        built[section] = cls(**options)
    for section, kind in COMPONENTS.items():
        options = raw.get(section)
        if not isinstance(options, dict) or "name" not in options:
            raise RecipeError(f"{source}: section {section!r} needs a 'name' (one of: "
                              f"{', '.join(registry.names(kind)) or 'none installed'})")
        factory = registry.get(kind, options["name"])
        params = factory_parameters(factory, kind)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        core = {**CORE_KEYS.get(section, {}), **RESEARCH_KEYS.get(section, {})}
        for key, value in options.items():
            if key == "name":
                continue
            where = lines.where(source, f"{section}.{key}")
            if key in core:
                _check_value(value, core[key], f"{section}.{key}", where)
                continue
            if key not in params and not takes_any:
                valid = [p for p in params if params[p].kind is not inspect.Parameter.VAR_KEYWORD] + list(core)
                raise RecipeError(f"{where}: {options['name']!r} ({section}) has no option {key!r}."
                                  f"{_closest(key, valid)}")
            param = params.get(key)
            if param is not None:
                _check_value(value, param.annotation, f"{section}.{key}", where)
    recipe = Recipe(source=source, raw=raw, **built)
    _check_values(recipe, lines)
    if any(recipe.get("data", key) is not None for key in RESEARCH_KEYS["data"]):
        from omnissl.research.phases import check_research_keys

        check_research_keys(recipe, registry, lines.where)
    return recipe


def _check_values(recipe: Recipe, lines: _Lines) -> None:
    """Rules across options (each option's own range is checked with its type)."""
    t, o = recipe.train, recipe.optim
    src = recipe.source
    micro = t.micro_batch_size or t.batch_size
    if t.batch_size % micro:
        raise RecipeError(f"{lines.where(src, 'train.batch_size')}: train.batch_size ({t.batch_size}) must be a "
                          f"multiple of train.micro_batch_size ({micro})")
    if (o.lr is None) == (o.base_lr is None):
        raise RecipeError(f"{src}: set exactly one of optim.lr and optim.base_lr")
    if len(o.betas) != 2:
        raise RecipeError(f"{lines.where(src, 'optim.betas')}: optim.betas must be two numbers, got {o.betas!r}")
    if o.lr is not None and o.min_lr > o.lr:
        raise RecipeError(f"{lines.where(src, 'optim.min_lr')}: optim.min_lr ({o.min_lr}) is above the peak "
                          f"optim.lr ({o.lr})")


def recipe_index(registry: Registry) -> dict[str, Path]:
    """Every installed recipe, ``domain/name`` -> path."""
    index: dict[str, Path] = {}
    for root in registry.recipe_dirs():
        for path in sorted(Path(root).glob("*/*.yaml")):
            index.setdefault(f"{path.parent.name}/{path.stem}", path)
    return index


def resolve_path(name_or_path: str, registry: Registry) -> Path:
    """A recipe file from a path or an installed recipe name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        return path
    index = recipe_index(registry)
    if name_or_path in index:
        return index[name_or_path]
    hint = difflib.get_close_matches(name_or_path, list(index), n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    raise RecipeError(f"no recipe named {name_or_path!r}.{extra} `omnissl recipes` lists the installed ones.")


def load_recipe(name_or_path: str, overrides: Sequence[str], registry: Registry) -> Recipe:
    """Find, read, override and validate a recipe."""
    path = resolve_path(name_or_path, registry)
    raw, text = load_yaml(path)
    raw = apply_overrides(raw, overrides)
    return validate(raw, registry, str(path), text, overrides)


def header_command(path: Path) -> str | None:
    """The command in a recipe's leading comment (``# omnissl train ...``)."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if body.startswith("omnissl "):
            return body
    return None
