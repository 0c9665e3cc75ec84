"""Atomic checkpoints: written to a temporary file, then renamed over the old one.

A run killed at any moment leaves either the previous checkpoint or the new
one, never a half-written file. Loading never unpickles code (``weights_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from omnissl.errors import TrainingError

LAST = "last.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path}; nothing to resume (start without --resume)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} cannot be read ({exc}); delete it to start over") from exc
