"""Kept checkpoints: the encoder every ``train.keep_checkpoints`` steps, for per-checkpoint probes.

``checkpoints/last.pt`` is overwritten as training goes on; a kept checkpoint
``checkpoints/step-<s>.pt`` stays, so the encoder at step s can be probed later
(``omnissl probe RUN --all-checkpoints``) and set beside the validation loss logged at s
(``omnissl compare``). It holds the encoder only (the decoder, teacher and optimiser state
are for resuming, and ``last.pt`` has them), under the same ``model`` keys as ``last.pt``
(``encoder.<name>``), written like every checkpoint: atomically, with its digest, never
holding NaN or infinity (:func:`omnissl.train.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

KEPT = re.compile(r"step-(\d+)\.pt")


def kept_path(ckpt_dir: Path, step: int) -> Path:
    """``ckpt_dir/step-<step>.pt``."""
    return ckpt_dir / f"step-{step}.pt"


def keep_checkpoint(encoder_state: Mapping[str, torch.Tensor], step: int, ckpt_dir: Path,
                    every: int | None) -> Path | None:
    """Write ``ckpt_dir/step-<step>.pt`` when ``every`` is set and ``step`` is a multiple of it.

    The training loop calls this after each optimiser step with the number of steps done (the
    main process; under FSDP with the gathered weights); a resumed run rewrites the files after
    its checkpoint with the same weights (exact resume).

    Args:
        encoder_state: the encoder's ``state_dict()`` (``objective.encoder``).
        step: optimiser steps done.
        ckpt_dir: the run's ``checkpoints`` folder.
        every: ``train.keep_checkpoints``; None keeps nothing.
    Returns:
        the path written, or None.
    Raises:
        TrainingError: a weight holds NaN or infinity (nothing is written).
    """
    from omnissl.train.checkpoint import save_checkpoint  # here: the training loop imports this module

    if not every or step % every:
        return None
    weights = {f"encoder.{name}": value.detach().cpu() for name, value in encoder_state.items()}
    return save_checkpoint({"step": step, "model": weights}, kept_path(ckpt_dir, step))


def kept_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every kept checkpoint of a run folder, in step order."""
    found = []
    for path in (run_dir / "checkpoints").glob("step-*.pt"):
        match = KEPT.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_kept_encoder(path: Path, encoder: nn.Module) -> int:
    """Load a kept checkpoint's weights into ``encoder`` (digest and finiteness checked); its step."""
    from omnissl.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    prefix = "encoder."
    encoder.load_state_dict({k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)})
    return int(state["step"])

