"""Modality-agnostic maskers: they decide what is hidden from coords, kinds and pad only."""

from omnissl.maskers.attention import AttentionMasker
from omnissl.maskers.base import Mask, Masker
from omnissl.maskers.block import BlockMasker
from omnissl.maskers.group import GroupMasker
from omnissl.maskers.multiblock import MultiBlockMask, MultiBlockMasker
from omnissl.maskers.random import RandomMasker
from omnissl.maskers.span import SpanMasker

__all__ = ["Mask", "Masker", "RandomMasker", "BlockMasker", "SpanMasker", "GroupMasker", "MultiBlockMask",
           "MultiBlockMasker", "AttentionMasker"]
