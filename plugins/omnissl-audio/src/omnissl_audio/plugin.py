"""Registers the audio modality, data sets, masker and recipes with omnissl, and copies each
run's feature statistics (mean/std, skipped and silent clips) into its run folder.

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
imports neither torchaudio nor the decoders; a recipe that builds one imports its module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy

DATASETS: dict[str, Callable[..., Any]] = {
    "audio_folder": lazy("omnissl_audio.datasets:AudioFolder"),
    "audio_manifest": lazy("omnissl_audio.datasets:AudioManifest"),
    "spoken_digits": lazy("omnissl_audio.speech:SpokenDigits"),
    "pyannote_speakers": lazy("omnissl_audio.speech:PyannoteSpeakers")}
STATS_FILE = "audio_stats.json"


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


@hookimpl
def omnissl_train_start(run: Any) -> None:
    """Store the run's log-mel normalisation and front-end settings next to it (``audio_stats.json``)."""
    datasets = sys.modules.get("omnissl_audio.datasets")  # not imported: the run's data are not audio clips
    if datasets is not None and isinstance(run.dataset, datasets.AudioClips):
        (Path(run.out_dir) / STATS_FILE).write_text(json.dumps(run.dataset.normalisation(), indent=2) + "\n")
