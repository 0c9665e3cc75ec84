"""Reusable blocks: positional encodings and transformer stacks."""

from omnissl.layers.attention import TransformerStack, attention_mask, init_weights
from omnissl.layers.position import FourierFeatures, GridSinCos, KindEmbedding, PositionEncoding

__all__ = ["TransformerStack", "attention_mask", "init_weights", "FourierFeatures", "GridSinCos",
           "KindEmbedding", "PositionEncoding"]
