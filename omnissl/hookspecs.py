"""Every hook a plugin can implement: the contract between omnissl and its plugins.

A plugin is a module (or object) with functions decorated by
``omnissl.hookimpl`` whose names match the specifications below. It is found
through the ``omnissl`` entry-point group of an installed distribution::

    [project.entry-points.omnissl]
    eeg = "omnissl_eeg.plugin"

or, in a source checkout, by naming its module in ``OMNISSL_PLUGINS``
(comma-separated). omnissl's own maskers, encoders and objectives register
through these same hooks (``omnissl.builtin``).

Registration hooks return a dict from a lowercase name to a factory (a class
or function called with the recipe's options as keyword arguments). They run
once, when the registry is built, never inside the training loop. A name
registered by two plugins is an error that names both.

Run-time hooks are called by the trainer at the moments they name (on logged
steps, not every step); loggers and notifiers attach through them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("omnissl")


@hookspec
def omnissl_modalities() -> dict[str, Callable[..., Any]]:
    """Register modalities by name.

    A modality factory is called with the recipe's ``modality`` options and
    returns an :class:`omnissl.Modality`: it turns a data set's samples into
    :class:`omnissl.Tokens`, names its target streams and per-token losses,
    and may draw reconstructions and provide a classical baseline for probes.
    """


@hookspec
def omnissl_datasets() -> dict[str, Callable[..., Any]]:
    """Register data sets by name.

    A data set factory is called with the recipe's ``data`` options (all keys
    but ``name``, ``val_fraction`` and ``num_workers``) and returns a
    ``torch.utils.data.Dataset`` of sample dicts, with optional ``labels``
    (a sequence of class indices or floats) and ``task``
    (``"classification"`` or ``"regression"``) attributes for probes.
    """


@hookspec
def omnissl_maskers() -> dict[str, Callable[..., Any]]:
    """Register maskers by name.

    A masker factory is called with the recipe's ``masker`` options and
    returns a callable ``masker(batch, generator) -> Mask`` that decides,
    from ``coords``, ``kinds`` and ``pad`` only, which tokens are hidden.
    """


@hookspec
def omnissl_encoders() -> dict[str, Callable[..., Any]]:
    """Register encoders by name.

    An encoder factory is called as ``factory(spec, modality, **options)``
    with the data's :class:`omnissl.TokenSpec` and returns an
    :class:`omnissl.encoders.TokenEncoder` (or any module with its interface).
    """


@hookspec
def omnissl_objectives() -> dict[str, Callable[..., Any]]:
    """Register self-supervised objectives by name.

    An objective factory is called as ``factory(encoder, modality, **options)``
    and returns an :class:`omnissl.objectives.Objective`.
    """


@hookspec
def omnissl_exporters() -> dict[str, Callable[..., Any]]:
    """Register exporters by name, for ``omnissl export RUN_DIR --to NAME --out FILE``.

    An exporter is called as ``exporter(encoder, recipe, out)`` with the run's
    pre-trained encoder (weights loaded, eval mode), its resolved recipe dict and the output
    path; it writes the weights in another library's layout (MONAI's UNETR, timm's ViT, say)
    and returns the path written. Optional keywords, passed only to an exporter whose
    signature names them (or takes ``**kwargs``):

    - ``run_dir``: the run folder (``Path``), for per-run state beside the checkpoint, such
      as the JSON side files a plugin writes at train start (``audio_stats.json``);
    - ``registry``: the plugin registry the run was loaded with, to build components.

    An exporter may declare the modalities it takes in a ``modalities`` attribute (a tuple
    of names, or ``"any"``); ``omnissl export`` then refuses a run of another modality,
    naming the exporters that take it. omnissl's own ``safetensors`` exporter takes every modality
    (``omnissl.load_encoder`` reads its files back).
    """


@hookspec
def omnissl_recipe_dirs() -> list[Path]:
    """Return folders of recipe YAML files.

    A recipe at ``<dir>/<domain>/<name>.yaml`` is known as ``<domain>/<name>``.
    """


@hookspec
def omnissl_train_start(run: Any) -> None:
    """Called once before the first step (also on resume).

    ``run`` is the :class:`omnissl.train.RunInfo`: ``run.out_dir``,
    ``run.recipe`` (resolved dict), ``run.start_step``, ``run.total_steps``,
    ``run.dataset`` (the data set object being trained on).
    """


@hookspec
def omnissl_log(run: Any, step: int, metrics: dict[str, float]) -> None:
    """Called whenever the trainer logs metrics (every ``train.log_every`` steps and at
    validation), with the same dict that is appended to ``metrics.jsonl``."""


@hookspec
def omnissl_checkpoint(run: Any, step: int, path: Path) -> None:
    """Called after a checkpoint has been written atomically to ``path``."""


@hookspec
def omnissl_train_end(run: Any, metrics: dict[str, float]) -> None:
    """Called after the last step, the final checkpoint and the plots."""
