"""omnissl's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

from typing import Any, Callable

from omnissl import hookimpl
from omnissl.encoders import TokenEncoder
from omnissl.maskers import BlockMasker, GroupMasker, MultiBlockMasker, RandomMasker, SpanMasker
from omnissl.maskers.none import NoMasker
from omnissl.objectives import IJEPA, MAE, Data2Vec2, LeJEPA, SimMIM
from omnissl.objectives.finetune import Finetune


@hookimpl
def omnissl_maskers() -> dict[str, Callable[..., Any]]:
    return {"random": RandomMasker, "block": BlockMasker, "span": SpanMasker, "group": GroupMasker,
            "multiblock": MultiBlockMasker, "none": NoMasker}


@hookimpl
def omnissl_encoders() -> dict[str, Callable[..., Any]]:
    return {"transformer": TokenEncoder}


@hookimpl
def omnissl_objectives() -> dict[str, Callable[..., Any]]:
    return {"mae": MAE, "simmim": SimMIM, "data2vec2": Data2Vec2, "ijepa": IJEPA, "lejepa": LeJEPA,
            "finetune": Finetune}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    from omnissl.export import export_safetensors

    return {"safetensors": export_safetensors}
