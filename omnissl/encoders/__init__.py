"""Encoders: transformers over tokens (plugins may register others)."""

from omnissl.encoders.transformer import SIZES, TokenEncoder, gather_tokens

__all__ = ["SIZES", "TokenEncoder", "gather_tokens"]
