import inspect
import re
import textwrap
from pathlib import Path

import pytest

from omnissl import hookspecs
from omnissl.errors import PluginError
from omnissl.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("omnissl_")]


def test_every_hook_is_documented():
    docs = (ROOT / "docs" / "hooks.md").read_text()
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"hookspec {name} has no docstring"
        assert re.search(rf"^## `?{name}", docs, re.M), f"hook {name} is missing from docs/hooks.md"
    documented = re.findall(r"^## `?(omnissl_\w+)", docs, re.M)
    assert sorted(documented) == sorted(HOOKS), "docs/hooks.md documents a hook that does not exist"


def test_builtins_register_through_hooks():
    registry = load_plugins()
    builtin = next(p for p in registry.plugins if p.name == "omnissl")
    assert builtin.source == "builtin"
    assert {"random", "block", "span", "group"} <= set(builtin.registers["maskers"])
    assert {"mae", "simmim"} <= set(builtin.registers["objectives"])


def write_plugin(folder: Path, module: str, body: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(body))


def test_env_var_plugins_and_duplicate_names(tmp_path, monkeypatch):
    body = """
        from omnissl import hookimpl
        from omnissl.maskers import RandomMasker

        @hookimpl
        def omnissl_maskers():
            return {"my_masker": RandomMasker}
    """
    write_plugin(tmp_path, "toy_plugin_a", body)
    write_plugin(tmp_path, "toy_plugin_b", body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OMNISSL_PLUGINS", "toy_plugin_a")
    registry = load_plugins()
    assert registry.components["maskers"]["my_masker"][1] == "toy_plugin_a"
    monkeypatch.setenv("OMNISSL_PLUGINS", "toy_plugin_a, toy_plugin_b")
    with pytest.raises(PluginError, match="toy_plugin_a.*toy_plugin_b"):
        load_plugins()


def test_builtin_name_clash_names_both(tmp_path, monkeypatch):
    write_plugin(tmp_path, "toy_plugin_c", """
        from omnissl import hookimpl

        @hookimpl
        def omnissl_objectives():
            return {"mae": object}
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OMNISSL_PLUGINS", "toy_plugin_c")
    with pytest.raises(PluginError, match="'mae' is registered twice: by plugin 'omnissl' and by plugin 'toy_plugin_c'"):
        load_plugins()


def test_bad_hook_signature_and_missing_module(tmp_path, monkeypatch):
    write_plugin(tmp_path, "toy_plugin_d", """
        from omnissl import hookimpl

        @hookimpl
        def omnissl_log(run, step, metrics, extra):
            pass
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OMNISSL_PLUGINS", "toy_plugin_d")
    with pytest.raises(PluginError, match="toy_plugin_d"):
        load_plugins()
    monkeypatch.setenv("OMNISSL_PLUGINS", "no_such_module_xyz")
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        load_plugins()


def test_unknown_component_suggests_closest():
    registry = load_plugins()
    with pytest.raises(PluginError, match="Did you mean 'random'"):
        registry.get("maskers", "randon")


def _module(name: str, source: str):
    import types

    module = types.ModuleType(name)
    module.__file__ = f"/plugins/{name}.py"
    exec(source, module.__dict__)
    return module


def test_a_misspelt_hook_or_one_without_hookimpl_is_an_error_and_an_empty_plugin_a_warning():
    """pluggy ignores both silently; they used to surface later as "no modality named ..."."""
    import warnings

    import pytest

    from omnissl.errors import PluginError
    from omnissl.plugins import load_plugins

    misspelt = _module("typo_plugin", "from omnissl import hookimpl\n"
                                      "@hookimpl\ndef omnissl_modality():\n    return {}\n")
    with pytest.raises(PluginError, match=r"'typo_plugin' \(/plugins/typo_plugin.py\) defines omnissl_modality\(\), "
                                          r"which is not an omnissl hook; did you mean omnissl_modalities\?"):
        load_plugins(extra=[misspelt])
    bare = _module("bare_plugin", "def omnissl_datasets():\n    return {'x': dict}\n")
    with pytest.raises(PluginError, match=r"defines omnissl_datasets\(\) without @hookimpl"):
        load_plugins(extra=[bare])
    empty = _module("empty_plugin", "def helper():\n    return 1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = load_plugins(extra=[empty])
    assert any("plugin 'empty_plugin' (/plugins/empty_plugin.py) registers nothing" in str(w.message) for w in caught)
    assert "image" in registry.names("modalities")  # the others still load
