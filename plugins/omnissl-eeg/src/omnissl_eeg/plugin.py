"""Registers the EEG/MEG modality, data sets, recipes and the braindecode exporter with omnissl,
and keeps each run's channel identities beside it (``eeg_channels.json``).

Components are registered by import path (:func:`omnissl.plugins.lazy`): loading the plugin
does not import MNE; a recipe that builds one imports its module.
"""

from __future__ import annotations

import json
import sys
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


@hookimpl
def omnissl_train_start(run: Any) -> None:
    """Store the run's channel identities (the names ``data.unknown_channels: index`` numbered, in
    the order the encoder's identity table learns them) and montages next to it, for exports."""
    windows = sys.modules.get("omnissl_eeg.windows")  # not imported: the run's data are not EEG windows
    if windows is None or not isinstance(run.dataset, windows.WindowDataset):
        return
    from omnissl.train.checkpoint import write_text_atomic
    from omnissl_eeg.braindecode import CHANNELS_FILE, channel_state

    write_text_atomic(Path(run.out_dir) / CHANNELS_FILE, json.dumps(channel_state(run.dataset), indent=2) + "\n",
                      "channel list")
