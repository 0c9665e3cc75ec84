"""Finding plugins and collecting what they register.

Plugins come from three places, in this order: omnissl's built-ins
(``omnissl.builtin``), the ``omnissl`` entry-point group of installed
distributions, and modules named in the ``OMNISSL_PLUGINS`` environment
variable (comma-separated; for source checkouts and tests).

Registering a plugin must stay cheap: ``omnissl plugins``, ``omnissl recipes`` and every
command's start build the registry, and a plugin that imports its field library (MNE,
RDKit, MONAI, torchaudio) while registering makes all of them wait for it. A plugin
therefore registers its components with :func:`lazy` (``"omnissl_eeg.datasets:EEGFolder"``),
which imports the component only when it is built, inspected or called.
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

_UNRESOLVED = object()
# What a LazyFactory answers itself; every other attribute is the imported factory's.
_OWN = frozenset({"_lazy_target", "_lazy_item", "_lazy_value", "resolve", "lazy_target", "__class__",
                  "__wrapped__", "__reduce__", "__reduce_ex__", "__repr__", "__setattr__", "__getattribute__",
                  "__instancecheck__", "__subclasscheck__", "__call__"})


class LazyFactory:
    """A registered component named by its import path, imported the first time it is used.

    Made by :func:`lazy`. Until then only the path is known, so building the registry costs
    nothing; afterwards it stands for the factory everywhere omnissl looks at one: calling it
    builds the component, and attribute access (``__doc__``, ``__init__``, ``__name__``, an
    exporter's ``modalities``), ``inspect.signature``, ``typing.get_type_hints``,
    ``inspect.isclass``, ``issubclass``/``isinstance`` and pickling all see (or import) the
    factory itself. :meth:`Registry.get` hands out the imported factory, not this object.
    """

    __slots__ = ("_lazy_target", "_lazy_item", "_lazy_value")

    def __init__(self, target: str, item: Any = None) -> None:
        module, sep, attr = target.partition(":")
        if not sep or not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
            raise PluginError(f"lazy({target!r}): the target must be 'package.module:Name' (a module path, a colon "
                              f"and an attribute, such as 'omnissl_eeg.datasets:EEGFolder')")
        object.__setattr__(self, "_lazy_target", target)
        object.__setattr__(self, "_lazy_item", item)
        object.__setattr__(self, "_lazy_value", _UNRESOLVED)

    @property
    def lazy_target(self) -> str:
        """The import path, with ``[item]`` when the factory is an entry of a mapping."""
        item = object.__getattribute__(self, "_lazy_item")
        target = object.__getattribute__(self, "_lazy_target")
        return target if item is None else f"{target}[{item!r}]"

    def resolve(self) -> Callable[..., Any]:
        """Import the factory (once) and return it.

        Raises:
            PluginError: the module cannot be imported, or lacks the attribute or item.
        """
        value = object.__getattribute__(self, "_lazy_value")
        if value is not _UNRESOLVED:
            return value
        target = object.__getattribute__(self, "_lazy_target")
        item = object.__getattribute__(self, "_lazy_item")
        module_name, _, attr = target.partition(":")
        try:
            value = importlib.import_module(module_name)
        except Exception as exc:  # whatever the module raises while importing: name the component
            raise PluginError(f"{module_name} (for {self.lazy_target}) failed to import: {exc!r}. Install what it "
                              f"needs, or reinstall the plugin that provides it.") from exc
        try:
            for part in attr.split("."):
                value = getattr(value, part)
            if item is not None:
                value = value[item]
        except (AttributeError, KeyError, TypeError) as exc:
            raise PluginError(f"{self.lazy_target} does not exist ({exc!r}): the plugin registers a component "
                              f"under a path its code does not define; fix the lazy(...) entry") from exc
        if isinstance(value, LazyFactory):
            value = value.resolve()
        object.__setattr__(self, "_lazy_value", value)
        return value

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN:
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "resolve")(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.resolve(), name, value)

    @property  # type: ignore[misc]  # isinstance(f, type), inspect.isclass: answered for the factory
    def __class__(self) -> type:
        return type(self.resolve())

    @property
    def __wrapped__(self) -> Callable[..., Any]:  # inspect.signature and inspect.unwrap follow it
        return self.resolve()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self.resolve())  # type: ignore[arg-type]

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self.resolve())  # type: ignore[arg-type]

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # a path pickles; DataLoader workers re-import
        get = object.__getattribute__
        return (_lazy_from, (get(self, "_lazy_target"), get(self, "_lazy_item")))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __repr__(self) -> str:
        return f"lazy({self.lazy_target})"


def _lazy_from(target: str, item: Any) -> LazyFactory:
    return LazyFactory(target, item)


def lazy(target: str, item: Any = None) -> LazyFactory:
    """A component a plugin registers by import path, imported on first use.

    Use it in hook tables so that registering a plugin does not import its field library::

        @hookimpl
        def omnissl_datasets():
            return {"eeg_folder": lazy("omnissl_eeg.datasets:EEGFolder")}

    Args:
        target: ``"package.module:Name"`` (``Name`` may be dotted: ``"module:Class.build"``).
        item: when given, the factory is ``Name[item]``, an entry of a mapping the module
            defines (``lazy("omnissl_ct.export:EXPORTERS", "monai-vit")``).
    """
    return LazyFactory(target, item)


def resolve(factory: Any) -> Any:
    """The factory itself: a :func:`lazy` entry imported, anything else unchanged."""
    return factory.resolve() if type(factory) is LazyFactory else factory


def is_lazy(factory: Any) -> bool:
    """True for a :func:`lazy` entry (``isinstance`` would import it: it answers for the factory)."""
    return type(factory) is LazyFactory


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
        """The factory registered as ``name`` for ``kind`` (imported, when registered with
        :func:`lazy`); a clear error when unknown or when it cannot be imported."""
        table = self.components[kind]
        if name not in table:
            hint = difflib.get_close_matches(name, list(table), n=1)
            known = ", ".join(sorted(table)) or "none"
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise PluginError(
                f"no {kind[:-1] if kind != 'modalities' else 'modality'} named {name!r}.{extra} "
                f"Known: {known}. Install the plugin that provides it (see `omnissl plugins`)."
            )
        factory, owner = table[name]
        if not is_lazy(factory):
            return factory
        try:
            return factory.resolve()
        except PluginError as exc:
            raise PluginError(f"plugin {owner!r} registers {_singular(kind)} {name!r} as {factory!r}, "
                              f"which cannot be loaded: {exc}") from exc

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def recipe_dirs(self) -> list[Path]:
        return [d for p in self.plugins for d in p.recipe_dirs]


def _singular(kind: str) -> str:
    return "modality" if kind == "modalities" else kind[:-1]


def make_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("omnissl")
    manager.add_hookspecs(hookspecs)
    return manager


def _dist_version(module: ModuleType | object) -> str:
    top = getattr(module, "__name__", type(module).__module__).split(".")[0]
    try:  # the usual case, a distribution named as its package: no scan of every installed one (~1 s)
        dist = metadata.distribution(top)
        if top in (dist.read_text("top_level.txt") or "").split():
            return dist.version
    except metadata.PackageNotFoundError:
        pass
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
