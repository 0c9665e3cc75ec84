"""CT and other 3-D medical volumes for omnissl, read and preprocessed with MONAI."""

from omnissl_ct.datasets import CTPhantoms, CTVolumes
from omnissl_ct.export import to_monai_vit
from omnissl_ct.modality import CTModality

__version__ = "0.1.0"
__all__ = ["CTModality", "CTPhantoms", "CTVolumes", "to_monai_vit"]
