"""Core tokenizers shared by modalities."""

from omnissl.tokenizers.grid import GridPatchifier

__all__ = ["GridPatchifier"]
