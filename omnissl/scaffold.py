"""``omnissl new-plugin NAME``: a complete plugin distribution to start a new modality from.

The templates live in ``omnissl/templates/plugin`` (package data, so a wheel of omnissl carries
them). Every file there ends in ``.tmpl``; paths and contents name the plugin through four
placeholders, replaced verbatim (no template engine, so the Python in them stays plain):

* ``{{name}}``: the modality, the recipe folder and the prefix of the data sets (``demo_x``);
* ``{{package}}``: the import name (``omnissl_demo_x``);
* ``{{dist}}``: the distribution and folder name (``omnissl-demo-x``);
* ``{{Class}}``: the stem of class names (``DemoX``);

plus ``{{omnissl_version}}``, the core the plugin depends on at least. The generated plugin
installs with pip and passes its own tests unchanged (``tests/test_scaffold.py`` checks both).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omnissl.errors import OmnisslError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

TEMPLATE_SUFFIX = ".tmpl"
_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


@dataclass(frozen=True)
class PluginNames:
    """The names a plugin called ``name`` goes by."""

    name: str
    package: str
    dist: str
    class_stem: str

    def substitutions(self) -> dict[str, str]:
        from omnissl import __version__

        return {"{{name}}": self.name, "{{package}}": self.package, "{{dist}}": self.dist,
                "{{Class}}": self.class_stem, "{{omnissl_version}}": __version__}


def plugin_names(name: str) -> PluginNames:
    """The names of plugin ``name``, or an error saying what a valid name looks like.

    Raises:
        OmnisslError: ``name`` is not lowercase letters and digits joined by single underscores,
            starting with a letter.
    """
    if not _NAME.fullmatch(name):
        guess = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        guess = re.sub(r"^[0-9_]+", "", guess)
        hint = f" such as {guess!r}" if guess and _NAME.fullmatch(guess) else ""
        raise OmnisslError(f"{name!r} is not a valid plugin name: use lowercase letters and digits joined by single "
                           f"underscores, starting with a letter{hint}. It becomes the modality name, the recipe "
                           f"folder (<name>/mae-demo) and the Python package omnissl_<name>")
    return PluginNames(name=name, package=f"omnissl_{name}", dist=f"omnissl-{name.replace('_', '-')}",
                       class_stem="".join(part.capitalize() for part in name.split("_")))


def template_files(root: Traversable | None = None) -> dict[str, str]:
    """Every template as ``relative path (placeholders kept, .tmpl dropped) -> text``."""
    root = root or resources.files("omnissl") / "templates" / "plugin"
    found: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                if entry.name != "__pycache__":
                    walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(TEMPLATE_SUFFIX):
                found[prefix + entry.name[:-len(TEMPLATE_SUFFIX)]] = entry.read_text(encoding="utf-8")

    walk(root, "")
    if not found:
        raise OmnisslError(f"no plugin templates under {root}: the omnissl installation is incomplete; reinstall it")
    return found


def render(text: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    assert "{{" not in text, f"a template placeholder was left unreplaced: {text[text.index('{{'):][:40]!r}"
    return text


def _check_unregistered(names: PluginNames) -> None:
    """Refuse a name an installed plugin already registers: the two could not be installed together."""
    from omnissl.plugins import get_registry

    registry = get_registry()
    taken = [(kind, name) for kind, name in (("modalities", names.name), ("datasets", f"{names.name}_synthetic"),
                                             ("datasets", f"{names.name}_folder"))
             if name in registry.components[kind]]
    if taken:
        kind, name = taken[0]
        owner = registry.components[kind][name][1]
        what = "a modality" if kind == "modalities" else "a data set"
        raise OmnisslError(f"plugin {owner!r} (installed) already registers {what} named {name!r}: pick another "
                           f"plugin name, or uninstall {owner!r} first")


def new_plugin(name: str, parent: Path | str = ".") -> Path:
    """Write the plugin distribution ``omnissl-<name>`` into the folder ``parent``.

    The folder appears complete or not at all: it is written under a temporary name and
    renamed at the end.

    Args:
        name: the plugin name (``demo_x``); see :func:`plugin_names`.
        parent: the folder to create ``omnissl-<name>`` in.
    Returns:
        The new plugin's folder.
    Raises:
        OmnisslError: the name is not valid or already registered, ``parent`` is not a folder,
            or the plugin's folder exists.
    """
    names = plugin_names(name)
    parent = Path(parent).expanduser()
    target = parent / names.dist
    if target.exists():
        raise OmnisslError(f"{target} already exists: new-plugin never overwrites; pick another name or --dir, "
                           f"or delete it first")
    if not parent.is_dir():
        raise OmnisslError(f"--dir {parent} is not a folder: create it first")
    _check_unregistered(names)
    substitutions = names.substitutions()
    staging = parent / f".{names.dist}.{os.getpid()}.tmp"
    try:
        for relative, text in template_files().items():
            path = staging / render(relative, substitutions)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(text, substitutions), encoding="utf-8")
        readme = staging / "README.md"
        from omnissl.docs import update_readme

        update_readme(readme, _dataset_tables(staging, names))
        os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


class _Factories:
    """What :func:`omnissl.docs.dataset_markdown` asks of a registry, for a plugin not installed yet."""

    def __init__(self, table: dict[str, Callable[..., Any]]) -> None:
        self.table = table

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        return self.table[name]


def _dataset_tables(root: Path, names: PluginNames) -> str:
    """The README's data-set tables, as ``python -m omnissl.docs`` writes them once the plugin is installed:
    the generated plugin is imported from ``root/src`` for the time it takes, then forgotten."""
    from omnissl.docs import dataset_markdown

    src = str(root / "src")
    ours = names.package, names.package + "."
    clash = {m: sys.modules.pop(m) for m in list(sys.modules) if m == ours[0] or m.startswith(ours[1])}
    sys.path.insert(0, src)
    try:
        plugin = importlib.import_module(f"{names.package}.plugin")
        table = plugin.omnissl_datasets()
        return dataset_markdown(_Factories(table), sorted(table))
    finally:
        sys.path.remove(src)
        for module in [m for m in sys.modules if m == ours[0] or m.startswith(ours[1])]:
            del sys.modules[module]
        sys.modules.update(clash)
        importlib.invalidate_caches()


def next_steps(folder: Path, names: PluginNames) -> str:
    """What to do after ``omnissl new-plugin``, as the command prints it."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    listing = "\n".join(f"  {f}" for f in files)
    return (f"created {folder} ({len(files)} files):\n{listing}\n\nnext:\n"
            f"  pip install -e {folder}\n"
            f"  omnissl plugins                      # lists {names.name}\n"
            f"  omnissl train {names.name}/mae-demo --out runs/{names.name}-demo\n"
            f"  python -m pytest {folder / 'tests'}\n"
            f"then replace the modality, the data sets and the recipe with your own: {folder / 'README.md'} "
            f"says what each file is for.")
