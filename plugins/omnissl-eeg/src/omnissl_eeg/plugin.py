"""Registers the EEG/MEG modality, data sets, recipes and the braindecode exporter with omnissl,
and keeps each run's channel identities beside it (``eeg_channels.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from omnissl import hookimpl
from omnissl.train.checkpoint import write_text_atomic
from omnissl_eeg.braindecode import CHANNELS_FILE, EXPORTERS, channel_state
from omnissl_eeg.datasets import EEGFolder, EEGManifest
from omnissl_eeg.modality import EEGModality
from omnissl_eeg.uea import UEAEEG
from omnissl_eeg.windows import WindowDataset


@hookimpl
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    return {"eeg": EEGModality}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    return {"eeg_folder": EEGFolder, "eeg_manifest": EEGManifest, "uea_eeg": UEAEEG}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    return dict(EXPORTERS)


@hookimpl
def omnissl_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]


@hookimpl
def omnissl_train_start(run: Any) -> None:
    """Store the run's channel identities (the names ``data.unknown_channels: index`` numbered, in
    the order the encoder's identity table learns them) and montages next to it, for exports."""
    if isinstance(run.dataset, WindowDataset):
        write_text_atomic(Path(run.out_dir) / CHANNELS_FILE, json.dumps(channel_state(run.dataset), indent=2) + "\n",
                          "channel list")
