"""The training loop and what it needs: data loading, optimiser, checkpoints."""

from omnissl.train.loop import RunInfo, train

__all__ = ["RunInfo", "train"]
