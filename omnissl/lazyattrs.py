"""Module attributes imported on first access (PEP 562), for packages that must import light.

``import omnissl`` and every plugin package's ``__init__`` use it, so that loading the plugins
(``omnissl plugins``, ``omnissl recipes``) imports neither torch nor a field library::

    __getattr__, __dir__ = lazy_attributes(__name__, {"EEGFolder": "omnissl_eeg.datasets"})
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_attributes(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__``: ``names`` maps each attribute to the module
    that defines it, imported the first time the attribute is read (then cached in the package)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
