"""Registers the audio modality, data sets, masker and recipes with omnissl. Each run's feature
statistics (mean/std, skipped and silent clips) reach its run folder as ``audio_stats.json``
through the data sets' ``run_files`` (written by the core at train start, carried by shards).

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
imports neither torchaudio nor the decoders; a recipe that builds one imports its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy

DATASETS: dict[str, Callable[..., Any]] = {
    "audio_folder": lazy("omnissl_audio.datasets:AudioFolder"),
    "audio_manifest": lazy("omnissl_audio.datasets:AudioManifest"),
    "spoken_digits": lazy("omnissl_audio.speech:SpokenDigits"),
    "pyannote_speakers": lazy("omnissl_audio.speech:PyannoteSpeakers")}


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"audio": lazy("omnissl_audio.modality:AudioModality")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return dict(DATASETS)


@hookimpl
def omnissl_maskers() -> dict[str, Callable[..., Any]]:
    return {"audio_spans": lazy("omnissl_audio.masking:TimeFrequencyMasker")}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]

