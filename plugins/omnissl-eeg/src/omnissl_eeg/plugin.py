"""Registers the EEG/MEG modality, data sets and recipes with omnissl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_eeg.datasets import EEGFolder, EEGManifest
from omnissl_eeg.modality import EEGModality
from omnissl_eeg.uea import UEAEEG


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"eeg": EEGModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"eeg_folder": EEGFolder, "eeg_manifest": EEGManifest, "uea_eeg": UEAEEG}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]
