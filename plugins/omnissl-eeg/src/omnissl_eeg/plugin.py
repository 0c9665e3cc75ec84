"""Registers the EEG/MEG modality, data sets, recipes and the braindecode exporter with omnissl.
Each run's channel identities reach its run folder as ``eeg_channels.json`` through the data
sets' ``run_files`` (written by the core at train start, carried by shards).

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
does not import MNE; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"eeg": lazy("omnissl_eeg.modality:EEGModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"eeg_folder": lazy("omnissl_eeg.datasets:EEGFolder"),
            "eeg_manifest": lazy("omnissl_eeg.datasets:EEGManifest"), "uea_eeg": lazy("omnissl_eeg.uea:UEAEEG")}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    return {"braindecode": lazy("omnissl_eeg.braindecode:export_braindecode")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]

