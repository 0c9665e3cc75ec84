"""Registers the ECG modality, its data sets and its recipes with omnissl.

Every command (``omnissl plugins``, ``omnissl recipes``, ``omnissl train``) imports this module,
so it imports nothing heavy: components are named by import path with :func:`omnissl.plugins.lazy`
and imported only when a recipe builds one. A function here named ``omnissl_*`` must be a hook of
``omnissl/hookspecs.py`` decorated with ``@hookimpl``; anything else is refused when plugins load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"ecg": lazy("omnissl_ecg.modality:ECGModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    # Names are global across installed plugins: keep the "ecg_" prefix.
    return {"ecg_folder": lazy("omnissl_ecg.datasets:ECGFolder"),
            "ecg_manifest": lazy("omnissl_ecg.datasets:ECGManifest"),
            "ecg_examples": lazy("omnissl_ecg.examples:ECGExamples")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
