"""Finding plugins and collecting what they register.

Plugins come from three places, in this order: omnissl's built-ins
(``omnissl.builtin``), the ``omnissl`` entry-point group of installed
distributions, and modules named in the ``OMNISSL_PLUGINS`` environment
variable (comma-separated; for source checkouts and tests).
"""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pluggy

from omnissl import hookspecs
from omnissl.errors import PluginError

ENTRY_POINT_GROUP = "omnissl"
ENV_VAR = "OMNISSL_PLUGINS"
KINDS = ("modalities", "datasets", "maskers", "encoders", "objectives", "exporters")


@dataclass
class PluginInfo:
    """One loaded plugin: its name, where it came from and what it registered."""

    name: str
    version: str
    source: str  # "builtin", "entry point <dist>", or "OMNISSL_PLUGINS"
    registers: dict[str, list[str]] = field(default_factory=dict)
    recipe_dirs: list[Path] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the plugins registered, by kind and name, with the owning plugin."""

    plugins: list[PluginInfo]
    components: dict[str, dict[str, tuple[Callable[..., Any], str]]]
    manager: pluggy.PluginManager

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``name`` for ``kind``; a clear error when unknown."""
        table = self.components[kind]
        if name not in table:
            hint = difflib.get_close_matches(name, list(table), n=1)
            known = ", ".join(sorted(table)) or "none"
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise PluginError(
                f"no {kind[:-1] if kind != 'modalities' else 'modality'} named {name!r}.{extra} "
                f"Known: {known}. Install the plugin that provides it (see `omnissl plugins`)."
            )
        return table[name][0]

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def recipe_dirs(self) -> list[Path]:
        return [d for p in self.plugins for d in p.recipe_dirs]


def make_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("omnissl")
    manager.add_hookspecs(hookspecs)
    return manager


def _dist_version(module: ModuleType | object) -> str:
    top = getattr(module, "__name__", type(module).__module__).split(".")[0]
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            continue
    return getattr(module, "__version__", "unknown")


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> bool:
    if manager.is_registered(plugin) or manager.get_plugin(name) is not None:
        return False
    _check_hook_names(manager, plugin, name)
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} has a hook that does not match omnissl's hookspecs: {exc}") from exc
    if name != "omnissl" and not manager.get_hookcallers(plugin):
        where = getattr(plugin, "__file__", None) or repr(plugin)
        warnings.warn(f"plugin {name!r} ({where}) registers nothing: it has "
                      f"no @hookimpl function (omnissl_modalities, omnissl_datasets, ...); see docs/plugin-guide.md",
                      stacklevel=2)
    return True


def _check_hook_names(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    """pluggy ignores what it does not recognise; a misspelt hook (``omnissl_modality``) or a hook
    without ``@hookimpl`` would then surface much later as "no modality named ...". Refuse both."""
    specs = [n for n in dir(hookspecs) if n.startswith("omnissl_")]
    where = getattr(plugin, "__file__", None) or repr(plugin)
    for attr in dir(plugin):
        if not attr.startswith("omnissl_") or not callable(getattr(plugin, attr, None)):
            continue
        if attr not in specs:
            hint = difflib.get_close_matches(attr, specs, n=1)
            raise PluginError(f"plugin {name!r} ({where}) defines {attr}(), which is not an omnissl hook"
                              + (f"; did you mean {hint[0]}?" if hint else f"; the hooks are {', '.join(specs)}"))
        if manager.parse_hookimpl_opts(plugin, attr) is None:
            raise PluginError(f"plugin {name!r} ({where}) defines {attr}() without @hookimpl, so omnissl would "
                              f"ignore it; decorate it with `@hookimpl` (from omnissl import hookimpl)")


def load_plugins(extra: list[object] | None = None) -> Registry:
    """Load every plugin and build the registry.

    Args:
        extra: plugin objects to register after the others (used by tests).

    Raises:
        PluginError: a plugin cannot be imported, a hook is malformed, or two
            plugins register the same name.
    """
    from omnissl import builtin

    manager = make_manager()
    sources: dict[str, tuple[str, str]] = {}
    _register(manager, builtin, "omnissl")
    sources["omnissl"] = ("builtin", _dist_version(builtin))

    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not hide which one it is
            raise PluginError(
                f"plugin {ep.name!r} (entry point {ep.value!r} of {ep.dist.name if ep.dist else '?'}) "
                f"failed to import: {exc!r}. Reinstall or uninstall it."
            ) from exc
        if _register(manager, module, ep.name):
            version = ep.dist.version if ep.dist else _dist_version(module)
            sources[ep.name] = (f"entry point of {ep.dist.name if ep.dist else '?'}", version)

    for module_name in filter(None, (m.strip() for m in os.environ.get(ENV_VAR, "").split(","))):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"{ENV_VAR} names module {module_name!r}, which cannot be imported: {exc}") from exc
        if _register(manager, module, module_name):
            sources[module_name] = (ENV_VAR, _dist_version(module))

    for i, plugin in enumerate(extra or []):
        name = getattr(plugin, "__name__", f"extra-{i}")
        if _register(manager, plugin, name):
            sources[name] = ("extra", _dist_version(plugin))

    return _collect(manager, sources)


def _collect(manager: pluggy.PluginManager, sources: dict[str, tuple[str, str]]) -> Registry:
    infos = {name: PluginInfo(name, version, source) for name, (source, version) in sources.items()}
    components: dict[str, dict[str, tuple[Callable[..., Any], str]]] = {k: {} for k in KINDS}
    for kind in KINDS:
        caller = getattr(manager.hook, f"omnissl_{kind}")
        for impl in caller.get_hookimpls():  # registration order
            owner = manager.get_name(impl.plugin)
            table = impl.function() or {}
            if not isinstance(table, dict):
                raise PluginError(f"plugin {owner!r}: hook omnissl_{kind} must return a dict of name -> factory, "
                                  f"got {type(table).__name__}")
            for name, factory in table.items():
                if name in components[kind]:
                    first = components[kind][name][1]
                    raise PluginError(f"{kind[:-1] if kind != 'modalities' else 'modality'} {name!r} is registered "
                                      f"twice: by plugin {first!r} and by plugin {owner!r}. Uninstall one of them "
                                      f"or rename the component.")
                components[kind][name] = (factory, owner)
                infos[owner].registers.setdefault(kind, []).append(name)
    for impl in manager.hook.omnissl_recipe_dirs.get_hookimpls():
        owner = manager.get_name(impl.plugin)
        infos[owner].recipe_dirs.extend(Path(p) for p in (impl.function() or []))
    return Registry(plugins=list(infos.values()), components=components, manager=manager)


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_plugins()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded registry (tests that install plugins call this)."""
    global _REGISTRY
    _REGISTRY = None
