"""Registering a plugin imports no field library: components are ``lazy("module:Name")`` entries,
imported when a recipe builds or inspects them (issue 17, item 6; timings in BENCHMARKS.md)."""

from __future__ import annotations

import inspect
import json
import pickle
import subprocess
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnissl import hookimpl
from omnissl.errors import PluginError, RecipeError
from omnissl.plugins import LazyFactory, is_lazy, lazy, load_plugins, resolve
from omnissl.recipe import factory_parameters, validate

HEAVY = ("mne", "rdkit", "monai", "torchaudio", "nibabel")
PLUGINS = {"omnissl", "audio", "ct", "eeg", "image", "molecule", "splat"}

LISTING = """
import contextlib, io, json, sys
from omnissl.cli import main
from omnissl.plugins import get_registry
from omnissl.recipe import recipe_index

registry = get_registry()
index = recipe_index(registry)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    codes = [main(["plugins"]), main(["recipes"])]
print(json.dumps({"plugins": [p.name for p in registry.plugins], "recipes": sorted(index), "codes": codes,
                  "printed": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_building_the_registry_and_listing_recipes_imports_no_field_library() -> None:
    result = run_python(LISTING)
    assert PLUGINS <= set(result["plugins"]), "every plugin must be installed for this check to mean anything"
    assert len(result["recipes"]) >= 15 and "eeg/mae-demo" in result["recipes"]
    assert result["codes"] == [0, 0]
    assert "monai-unetr" in result["printed"] and "eeg/mae-demo" in result["printed"]
    loaded = top_level(result["modules"])
    assert not loaded & set(HEAVY), f"registering the plugins imported {sorted(loaded & set(HEAVY))}"
    # the core stays light too: listing needs neither torch nor timm (`import omnissl` is pluggy only)
    assert not loaded & {"torch", "timm", "numpy"}, sorted(loaded & {"torch", "timm", "numpy"})


def test_help_loads_no_plugin() -> None:
    result = run_python(textwrap.dedent("""
        import contextlib, io, json, sys
        from omnissl.cli import main
        import omnissl.plugins
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({"code": code, "help": out.getvalue(), "registry": omnissl.plugins._REGISTRY is not None,
                          "modules": sorted(sys.modules)}))
    """))
    assert result["code"] == 0 and "omnissl plugins" in result["help"]
    assert not result["registry"], "omnissl --help built the plugin registry"
    assert not {m for m in top_level(result["modules"]) if m.startswith("omnissl_")}, "--help imported a plugin"
    assert "torch" not in top_level(result["modules"])


PROBE_MODULE = '''
"""A component module that must not be imported before it is used."""
from __future__ import annotations

from typing import Annotated

from omnissl.recipe import Range


class Probe:
    """A probe data set, for the lazy registration test.

    Args:
        ratio: a fraction.
        steps: a count.
    """

    def __init__(self, ratio: Annotated[float, Range(gt=0, lt=1)] = 0.5, steps: int = 3) -> None:
        self.ratio, self.steps = ratio, steps


def build(ratio: Annotated[float, Range(gt=0, lt=1)] = 0.25) -> Probe:
    """Build a probe."""
    return Probe(ratio)


TABLE = {"probe": Probe}
'''


@pytest.fixture
def probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"lazy_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PROBE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_lazy_factory_imports_on_first_use_and_is_transparent(probe_module: str) -> None:
    factory = lazy(f"{probe_module}:Probe")
    function = lazy(f"{probe_module}:build")
    item = lazy(f"{probe_module}:TABLE", "probe")
    assert probe_module not in sys.modules, "lazy() imported the module"
    assert repr(factory) == f"lazy({probe_module}:Probe)" and is_lazy(factory)
    assert probe_module not in sys.modules

    signature = inspect.signature(factory)  # inspecting it is a first use: the module is imported now
    assert probe_module in sys.modules
    real = sys.modules[probe_module]
    assert signature == inspect.signature(real.Probe) and list(signature.parameters) == ["ratio", "steps"]
    assert inspect.signature(function) == inspect.signature(real.build)
    assert inspect.isclass(factory) and not inspect.isclass(function) and callable(function)
    assert factory.__doc__ == real.Probe.__doc__ and inspect.getdoc(function) == "Build a probe."
    assert factory.__name__ == "Probe" and factory.__module__ == probe_module
    assert typing.get_type_hints(factory.__init__, include_extras=True) == \
        typing.get_type_hints(real.Probe.__init__, include_extras=True)
    assert typing.get_type_hints(function, include_extras=True) == \
        typing.get_type_hints(real.build, include_extras=True)
    assert factory_parameters(factory, "datasets") == factory_parameters(real.Probe, "datasets")
    assert factory_parameters(function, "datasets") == factory_parameters(real.build, "datasets")
    built = factory(ratio=0.2)
    assert type(built) is real.Probe and built.ratio == 0.2
    assert isinstance(built, factory) and issubclass(real.Probe, factory) and issubclass(factory, object)
    assert resolve(item) is real.Probe and resolve(factory) is real.Probe and resolve(real.Probe) is real.Probe
    copy = pickle.loads(pickle.dumps(factory))  # DataLoader workers, spawn: a path, re-imported
    assert is_lazy(copy) and resolve(copy) is real.Probe


def test_bad_lazy_entries_fail_on_use_naming_plugin_component_and_path(probe_module: str) -> None:
    with pytest.raises(PluginError, match="module path, a colon"):
        lazy("omnissl_eeg.datasets.EEGFolder")

    class Broken:
        __name__ = "broken_plugin"

        @hookimpl
        def omnissl_datasets(self) -> dict:
            return {"gone": lazy("no_such_module_for_omnissl:Thing"),
                    "typo": lazy(f"{probe_module}:Porbe"),
                    "no_item": lazy(f"{probe_module}:TABLE", "missing")}

    registry = load_plugins(extra=[Broken()])  # registering imports nothing, so nothing fails yet
    assert {"gone", "typo", "no_item"} <= set(registry.names("datasets"))
    with pytest.raises(PluginError, match=r"plugin 'broken_plugin' registers dataset 'gone' as "
                                          r"lazy\(no_such_module_for_omnissl:Thing\).*failed to import.*"
                                          r"No module named 'no_such_module_for_omnissl'"):
        registry.get("datasets", "gone")
    with pytest.raises(PluginError, match=r"'typo'.*Porbe does not exist.*fix the lazy"):
        registry.get("datasets", "typo")
    with pytest.raises(PluginError, match=r"'no_item'.*TABLE\['missing'\] does not exist"):
        registry.get("datasets", "no_item")


RECIPE = {"modality": {"name": "image", "image_size": 8, "patch_size": 2, "channels": 1},
          "data": {"name": "digits", "val_fraction": 0.2},
          "encoder": {"name": "transformer", "size": "tiny", "dim": 32, "depth": 1, "heads": 2},
          "objective": {"name": "mae", "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
          "optim": {"lr": 0.001}, "train": {"steps": 3, "batch_size": 16}}


def test_lazy_factory_validates_a_recipe_exactly_as_the_factory_does() -> None:
    from omnissl.maskers import RandomMasker

    class Twins:
        __name__ = "twins"

        @hookimpl
        def omnissl_maskers(self) -> dict:
            return {"eager_twin": RandomMasker, "lazy_twin": lazy("omnissl.maskers:RandomMasker")}

    registry = load_plugins(extra=[Twins()])
    assert is_lazy(registry.components["maskers"]["lazy_twin"][0])
    assert registry.get("maskers", "lazy_twin") is RandomMasker  # the registry hands out the class itself
    cases = [({"ratoi": 0.5}, "toy.yaml: 'TWIN' (masker) has no option 'ratoi'. Did you mean 'ratio'?"),
             ({"ratio": 1.5}, "toy.yaml: masker.ratio must be > 0 and < 1, got 1.5"),
             ({"ratio": "half"}, "toy.yaml: masker.ratio must be")]
    for bad, expected in cases:
        messages = {}
        for name in ("eager_twin", "lazy_twin"):
            with pytest.raises(RecipeError) as caught:
                validate({**RECIPE, "masker": {"name": name, **bad}}, registry, "toy.yaml")
            messages[name] = str(caught.value).replace(name, "TWIN")
        assert messages["eager_twin"] == messages["lazy_twin"], bad
        assert messages["lazy_twin"].startswith(expected), messages["lazy_twin"]
    good = validate({**RECIPE, "masker": {"name": "lazy_twin", "ratio": 0.6}}, registry, "toy.yaml")
    assert good.raw["masker"]["ratio"] == 0.6

    # a plugin's own lazy entry (the image plugin's digits data set) names the bad option too
    assert is_lazy(registry.components["datasets"]["digits"][0])
    with pytest.raises(RecipeError, match=r"'digits' \(data\) has no option 'n_clases'"):
        validate({**RECIPE, "masker": {"name": "random"}, "data": {"name": "digits", "n_clases": 3}},
                 registry, "toy.yaml")


def test_every_plugin_registers_lazily_and_ct_lists_every_exporter() -> None:
    registry = load_plugins()
    eager = [(kind, name, owner) for kind, table in registry.components.items()
             for name, (factory, owner) in table.items() if not is_lazy(factory)]
    assert not eager, f"registered without lazy(...), so loading the plugin imports them: {eager}"
    from omnissl_ct.export import EXPORTERS
    from omnissl_ct.plugin import EXPORTER_NAMES

    assert set(EXPORTER_NAMES) == set(EXPORTERS), "omnissl_ct.plugin.EXPORTER_NAMES is out of date"
    exporter = registry.get("exporters", "monai-vit")
    assert exporter is EXPORTERS["monai-vit"] and exporter.modalities == ("ct",)
    assert isinstance(registry.components["exporters"]["monai-vit"][0], LazyFactory)
