"""omnissl's own components, registered through the same hooks as any plugin.

Registered with :func:`omnissl.plugins.lazy`, like every plugin's, so that building the
registry (``omnissl plugins``, ``omnissl recipes``) imports neither torch nor timm; each
component is imported when a recipe builds or inspects it.
"""

from __future__ import annotations

from typing import Any, Callable

from omnissl import hookimpl
from omnissl.plugins import lazy


@hookimpl
def omnissl_maskers() -> dict[str, Callable[..., Any]]:
    return {"random": lazy("omnissl.maskers:RandomMasker"), "block": lazy("omnissl.maskers:BlockMasker"),
            "span": lazy("omnissl.maskers:SpanMasker"), "group": lazy("omnissl.maskers:GroupMasker"),
            "multiblock": lazy("omnissl.maskers:MultiBlockMasker"),
            "attention": lazy("omnissl.maskers:AttentionMasker"),
            "none": lazy("omnissl.maskers.none:NoMasker")}


@hookimpl
def omnissl_encoders() -> dict[str, Callable[..., Any]]:
    return {"transformer": lazy("omnissl.encoders:TokenEncoder")}


@hookimpl
def omnissl_objectives() -> dict[str, Callable[..., Any]]:
    return {"mae": lazy("omnissl.objectives:MAE"), "simmim": lazy("omnissl.objectives:SimMIM"),
            "lejepa": lazy("omnissl.objectives:LeJEPA"), "data2vec2": lazy("omnissl.objectives:Data2Vec2"),
            "ijepa": lazy("omnissl.objectives:IJEPA"), "ibot": lazy("omnissl.objectives:IBOT"),
            "finetune": lazy("omnissl.objectives.finetune:Finetune")}


@hookimpl
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    return {"safetensors": lazy("omnissl.export:export_safetensors")}


@hookimpl
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    # Any modality's: shards written by `omnissl shard`, and weighted mixtures of data sets (docs/design.md#streaming)
    return {"shards": lazy("omnissl.datasets.shards:ShardDataset"),
            "mixture": lazy("omnissl.datasets.mixture:Mixture")}


@hookimpl
def omnissl_train_start(run: Any) -> None:
    # The data set's side files (audio_stats.json, eeg_channels.json): its run_files(), or the
    # writing data set's, recorded in shards (omnissl.datasets.write_run_files)
    from pathlib import Path

    from omnissl.datasets import write_run_files

    write_run_files(run.dataset, Path(run.out_dir))
