"""Build a run's components from a validated recipe, through the plugin registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from omnissl.errors import DataError, RecipeError
from omnissl.modality import Modality
from omnissl.plugins import Registry
from omnissl.recipe import Recipe


def _construct(factory: Callable[..., Any], section: str, name: str, args: tuple, options: dict[str, Any],
               source: str) -> Any:
    try:
        return factory(*args, **options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{source}: cannot build {section} {name!r} with {options}: {exc}") from exc


def build_modality(recipe: Recipe, registry: Registry) -> Modality:
    name, options = recipe.component("modality")
    return _construct(registry.get("modalities", name), "modality", name, (), options, recipe.source)


def build_dataset(recipe: Recipe, registry: Registry) -> Any:
    name, options = recipe.component("data")
    dataset = _construct(registry.get("datasets", name), "data", name, (), options, recipe.source)
    if len(dataset) == 0:
        raise DataError(f"data set {name!r} ({options}) has no samples")
    # A data set that knows its samples' modality (shards record it) must match the recipe's.
    declared, modality = getattr(dataset, "modality_name", None), recipe.raw["modality"]["name"]
    if declared is not None and declared != modality:
        raise DataError(f"{recipe.source}: data set {name!r} ({getattr(dataset, 'origin', options)}) holds samples "
                        f"of modality {declared!r}, but modality.name is {modality!r}; train them with a recipe of "
                        f"modality {declared!r}")
    return dataset


def build_masker(recipe: Recipe, registry: Registry) -> Callable[..., Any]:
    name, options = recipe.component("masker")
    return _construct(registry.get("maskers", name), "masker", name, (), options, recipe.source)


def build_encoder(recipe: Recipe, registry: Registry, modality: Modality) -> nn.Module:
    name, options = recipe.component("encoder")
    return _construct(registry.get("encoders", name), "encoder", name, (modality.spec(), modality), options,
                      recipe.source)


def build_objective(recipe: Recipe, registry: Registry, encoder: nn.Module, modality: Modality) -> nn.Module:
    name, options = recipe.component("objective")
    return _construct(registry.get("objectives", name), "objective", name, (encoder, modality), options,
                      recipe.source)


@dataclass
class Components:
    modality: Modality
    dataset: Any
    masker: Callable[..., Any]
    objective: nn.Module


def build_all(recipe: Recipe, registry: Registry, dataset: Any = None) -> Components:
    """Everything a run needs, in dependency order (modality, data, masker, encoder, objective);
    ``dataset``: the recipe's data set, already built (several runs over the same data)."""
    modality = build_modality(recipe, registry)
    dataset = build_dataset(recipe, registry) if dataset is None else dataset
    masker = build_masker(recipe, registry)
    encoder = build_encoder(recipe, registry, modality)
    objective = build_objective(recipe, registry, encoder, modality)
    return Components(modality, dataset, masker, objective)
