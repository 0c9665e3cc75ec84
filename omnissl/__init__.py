"""omnissl: self-supervised pre-training for any modality.

The core sees tokens with coordinates; modality plugins turn their data into
tokens. See ``omnissl.hookspecs`` for the plugin contract.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("omnissl")

from omnissl.badinput import skip_or_raise  # noqa: E402
from omnissl.errors import DataError, OmnisslError, PluginError, RecipeError, TrainingError  # noqa: E402
from omnissl.modality import Modality, TargetStream, mse_loss  # noqa: E402
from omnissl.tokens import CoordGroup, TokenBatch, Tokens, TokenSpec, collate_tokens  # noqa: E402
from omnissl.export import PretrainedEncoder, load_encoder  # noqa: E402

__all__ = [
    "__version__", "hookimpl", "Modality", "TargetStream", "mse_loss", "CoordGroup", "TokenBatch",
    "Tokens", "TokenSpec", "collate_tokens", "OmnisslError", "RecipeError", "PluginError", "DataError",
    "TrainingError", "skip_or_raise", "load_encoder", "PretrainedEncoder",
]
