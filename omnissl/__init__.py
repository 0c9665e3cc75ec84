"""omnissl: self-supervised pre-training for any modality.

The core sees tokens with coordinates; modality plugins turn their data into
tokens. See ``omnissl.hookspecs`` for the plugin contract.

``import omnissl`` is light (pluggy only): the names below that need torch are imported
on first access (PEP 562), so that a plugin's ``from omnissl import hookimpl`` and the
command line's listings (``omnissl plugins``, ``omnissl recipes``) do not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("omnissl")

from omnissl.badinput import skip_or_raise  # noqa: E402
from omnissl.errors import DataError, OmnisslError, PluginError, RecipeError, TrainingError  # noqa: E402
from omnissl.lazyattrs import lazy_attributes  # noqa: E402

_LAZY = {"Modality": "omnissl.modality", "TargetStream": "omnissl.modality", "mse_loss": "omnissl.modality",
         "CoordGroup": "omnissl.tokens", "TokenBatch": "omnissl.tokens", "Tokens": "omnissl.tokens",
         "TokenSpec": "omnissl.tokens", "collate_tokens": "omnissl.tokens",
         "PretrainedEncoder": "omnissl.export", "load_encoder": "omnissl.export"}

if TYPE_CHECKING:
    from omnissl.export import PretrainedEncoder, load_encoder
    from omnissl.modality import Modality, TargetStream, mse_loss
    from omnissl.tokens import CoordGroup, TokenBatch, Tokens, TokenSpec, collate_tokens


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "__version__", "hookimpl", "Modality", "TargetStream", "mse_loss", "CoordGroup", "TokenBatch",
    "Tokens", "TokenSpec", "collate_tokens", "OmnisslError", "RecipeError", "PluginError", "DataError",
    "TrainingError", "skip_or_raise", "load_encoder", "PretrainedEncoder",
]
