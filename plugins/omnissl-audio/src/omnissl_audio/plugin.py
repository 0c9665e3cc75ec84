"""Registers the audio modality, data sets, masker and recipes with omnissl, and copies each
run's feature statistics (mean/std, skipped and silent clips) into its run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl_audio.datasets import AudioClips, AudioFolder, AudioManifest
from omnissl_audio.masking import TimeFrequencyMasker
from omnissl_audio.modality import AudioModality
from omnissl_audio.speech import PyannoteSpeakers, SpokenDigits

DATASETS: dict[str, Callable[..., Any]] = {"audio_folder": AudioFolder, "audio_manifest": AudioManifest,
                                           "spoken_digits": SpokenDigits, "pyannote_speakers": PyannoteSpeakers}
STATS_FILE = "audio_stats.json"


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"audio": AudioModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return dict(DATASETS)


@hookimpl
def omnissl_maskers() -> dict[str, Callable[..., Any]]:
    return {"audio_spans": TimeFrequencyMasker}


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]


@hookimpl
def omnissl_train_start(run: Any) -> None:
    """Store the run's log-mel normalisation and front-end settings next to it (``audio_stats.json``)."""
    dataset = run.dataset
    if isinstance(dataset, AudioClips):
        (Path(run.out_dir) / STATS_FILE).write_text(json.dumps(dataset.normalisation(), indent=2) + "\n")
