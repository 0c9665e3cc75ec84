"""Research tools (docs/research.md): per-checkpoint evaluation and the validation loss as an
indicator of downstream quality (``checkpoints``, ``compare``), data selection (``select``),
sequential pre-training with replay (``phases``, ``replay``)."""
