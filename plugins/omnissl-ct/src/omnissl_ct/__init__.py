"""CT and other 3-D medical volumes for omnissl, read and preprocessed with MONAI.

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_ct.plugin``, which imports this package first) does not import MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"CTPhantoms": "omnissl_ct.datasets", "CTVolumes": "omnissl_ct.datasets", "to_monai_vit": "omnissl_ct.export",
         "CTModality": "omnissl_ct.modality"}

if TYPE_CHECKING:
    from omnissl_ct.datasets import CTPhantoms, CTVolumes
    from omnissl_ct.export import to_monai_vit
    from omnissl_ct.modality import CTModality

__version__ = "0.1.0"
__all__ = ["CTModality", "CTPhantoms", "CTVolumes", "to_monai_vit"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
