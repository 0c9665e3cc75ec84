"""A pre-trained encoder in one safetensors file, and back: ``omnissl export RUN --to safetensors``
and :func:`load_encoder`.

The file holds the encoder's weights and, in the safetensors header (``__metadata__``, JSON
strings), everything needed to rebuild it and to tokenise raw samples exactly as training did:
the recipe's ``modality`` and ``encoder`` sections (as resolved at training, every default
filled in), the ``data`` section (which data set and preprocessing the run read), the JSON side
files plugins wrote into the run folder at training time (the audio plugin's
``audio_stats.json``: the log-mel mean/std its data set normalised by; the EEG plugin's
``eeg_channels.json``), the token spec, the modality's readout and the plugin that provides it.
Loading reads that header as JSON and the tensors as raw bytes: no pickle, no code from the
file (safetensors has no way to carry any). The modality and encoder are then built by the
installed plugins, through the same registry as training, and the weights are loaded strictly::

    omnissl export runs/digits --to safetensors --out digits.safetensors

    from omnissl import load_encoder
    encoder = load_encoder("digits.safetensors")      # no run folder needed
    features = encoder(samples)                        # sample dicts, as the plugin's data sets yield them
    tokens = encoder(samples, pool="none")             # (B, N, dim) token features

The same file is what ``omnissl_eeg.braindecode.OmnisslEEGEncoder.from_export`` reads.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from omnissl.errors import DataError, OmnisslError
from omnissl.modality import Modality
from omnissl.plugins import Registry, get_registry
from omnissl.tokens import TokenBatch, collate_tokens

FORMAT = "omnissl-encoder"
FORMAT_VERSION = 1
# Header keys (each value a string, as safetensors requires; JSON unless said otherwise).
KEYS = ("format", "format_version", "omnissl_version", "modality", "encoder", "data", "spec", "readout",
        "plugin", "run_files")
# A run folder's JSON files larger than this are not side files (they would bloat every header).
SIDE_FILE_LIMIT = 1 << 20
CORE_REPORTS = ("probe", "finetune")  # report files the core's commands write (probe.json, finetune.json...)
PoolOrTokens = Literal["mean", "max", "mean_max", "none"]


def write_weights_export(out: Path, state: dict[str, Tensor], info: dict[str, Any],
                         metadata: dict[str, str] | None = None) -> Path:
    """Another library's weights at ``out`` and their instructions at ``out.json``, each written
    atomically (a temporary file renamed into place): ``.safetensors`` through safetensors (with
    ``metadata`` in its header), any other name as a ``torch.save`` of plain tensors, loadable
    with ``torch.load(path, weights_only=True)``. The exporters of timm, MONAI and braindecode
    share it."""
    from omnissl.cache import atomic_file, write_text

    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_file(out, "exported weights") as handle:
        if out.suffix == ".safetensors":
            from safetensors.torch import save

            handle.write(save(state, metadata=metadata))
        else:
            torch.save(state, handle)
    write_text(Path(f"{out}.json"), json.dumps(info, indent=2) + "\n", "export instructions")
    return out


def run_side_files(run_dir: Path | None) -> dict[str, Any]:
    """The JSON files plugins wrote into ``run_dir`` at training time, by name, parsed.

    These are the top-level ``*.json`` files that ``omnissl train`` itself does not write
    (:data:`omnissl.train.runfolder.RUN_FILES`: ``data.json``, ``probe.json``...) and that are
    not the core's probe or fine-tuning reports (``probe*.json``, ``finetune*.json``), up to
    1 MiB each: per-run state a plugin keeps beside the run, such as the audio plugin's
    ``audio_stats.json`` (the log-mel normalisation its data set computed from the data).
    """
    from omnissl.train.runfolder import RUN_FILES

    if run_dir is None:
        return {}
    out: dict[str, Any] = {}
    for path in sorted(Path(run_dir).glob("*.json")):
        if (path.name in RUN_FILES or path.name.startswith(CORE_REPORTS) or not path.is_file()
                or path.stat().st_size > SIDE_FILE_LIMIT):
            continue
        try:
            out[path.name] = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue  # not JSON after all: not a side file
    return out


def plugin_of(registry: Registry, kind: str, name: str) -> dict[str, str | None]:
    """Which plugin registered ``name`` for ``kind``: its name, distribution and version."""
    factory, owner = registry.components[kind][name]
    info = next((p for p in registry.plugins if p.name == owner), None)
    top = getattr(factory, "__module__", "").split(".")[0]
    dists = importlib_metadata.packages_distributions().get(top, [])
    return {"name": owner, "distribution": dists[0] if dists else None,
            "version": info.version if info is not None else None}


def spec_json(modality: Modality) -> Any:
    """The modality's token spec as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(asdict(modality.spec())))


ANY = "any"  # an exporter's ``modalities`` when it takes runs of every modality


def exporters_for(modality: str, registry: Registry | None = None) -> list[str]:
    """The registered exporters known to take runs of ``modality``: those whose ``modalities``
    attribute names it or is ``"any"`` (an exporter without the attribute says nothing)."""
    registry = registry or get_registry()
    out = []
    for name in registry.names("exporters"):
        takes = getattr(registry.get("exporters", name), "modalities", None)
        if takes == ANY or (takes is not None and modality in takes):
            out.append(name)
    return out


def wrong_modality(target: str, modality: str | None, takes: Sequence[str],
                   registry: Registry | None = None) -> OmnisslError:
    """The error for ``--to target`` on a run of another modality: what it takes, what to use instead."""
    instead = [name for name in exporters_for(str(modality), registry) if name != target]
    return OmnisslError(f"this run was trained on modality {modality!r}; --to {target} takes "
                        f"{' or '.join(takes)} runs only. For {modality} runs use --to "
                        f"{' or --to '.join(instead) if instead else 'safetensors'}")


def export_safetensors(encoder: nn.Module, recipe: dict[str, Any], out: Path, run_dir: Path | None = None,
                       registry: Registry | None = None, extra_files: dict[str, Any] | None = None) -> Path:
    """Write ``out``: the encoder's weights and what rebuilds it, in one safetensors file.

    This is ``omnissl export RUN_DIR --to safetensors --out FILE``; any modality. Reload it with
    :func:`load_encoder`.

    Args:
        encoder: the run's pre-trained encoder (weights loaded).
        recipe: the run's resolved recipe dict (``recipe.yaml``).
        out: the file to write (atomically).
        run_dir: the run folder, for the plugins' side files (:func:`run_side_files`); None
            carries none.
        registry: the plugin registry (default: the installed plugins).
        extra_files: more side files to carry, by name (an exporter that computed per-run state
            the run folder lacks).
    """
    from omnissl import __version__
    from omnissl.train.checkpoint import save_weights

    registry = registry or get_registry()
    section = dict(recipe["modality"])
    name = section.pop("name")
    modality = registry.get("modalities", name)(**section)
    files = run_side_files(run_dir)
    files.update(extra_files or {})
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "omnissl_version": __version__,
        "modality": json.dumps(recipe["modality"]),
        "encoder": json.dumps(recipe["encoder"]),
        "data": json.dumps(recipe.get("data", {})),
        "spec": json.dumps(spec_json(modality)),
        "readout": str(getattr(modality, "readout", "mean")),
        "plugin": json.dumps(plugin_of(registry, "modalities", name)),
        "run_files": json.dumps(files),
    }
    return save_weights(dict(encoder.state_dict()), Path(out), header)


export_safetensors.modalities = ANY


def read_header(path: Path | str) -> dict[str, Any]:
    """The omnissl metadata of an export, parsed (JSON), without reading any tensor.

    Raises:
        OmnisslError: naming ``path`` when it is missing, not a safetensors file, or a
            safetensors file without omnissl's metadata.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise OmnisslError(f"{path} does not exist; write an export with `omnissl export RUN_DIR --to safetensors "
                           f"--out {path}`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error type for a file that is not one
        raise OmnisslError(f"{path} is not an omnissl encoder export: it cannot be read as a safetensors file "
                           f"({exc})") from exc
    if raw.get("format") != FORMAT:
        hint = " It holds weights without the recipe sections (a run's checkpoints/encoder.safetensors?)."
        raise OmnisslError(f"{path} is not an omnissl encoder export: its safetensors header has no "
                           f"'format: {FORMAT}'.{hint} Write one with `omnissl export RUN_DIR --to safetensors "
                           f"--out FILE`")
    try:
        version = int(raw.get("format_version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > FORMAT_VERSION:
        raise OmnisslError(f"{path} is an omnissl encoder export of format version {raw.get('format_version')!r}; "
                           f"this omnissl reads version {FORMAT_VERSION}: upgrade omnissl")
    header: dict[str, Any] = {}
    for key in KEYS:
        if key not in raw:
            raise OmnisslError(f"{path} is an incomplete omnissl encoder export: its header lacks {key!r}")
        value = raw[key]
        if key in ("format", "format_version", "omnissl_version", "readout"):
            header[key] = value
            continue
        try:
            header[key] = json.loads(value)
        except ValueError as exc:
            raise OmnisslError(f"{path}: the header's {key!r} is not valid JSON ({exc}); the file is damaged, "
                               f"export it again") from exc
    return header


def load_encoder(path: Path | str, *, device: str | torch.device = "cpu",
                 registry: Registry | None = None) -> "PretrainedEncoder":
    """An exported encoder (``omnissl export RUN --to safetensors``), ready to embed raw samples.

    Reads only the safetensors file (its JSON header and raw tensor bytes; nothing is unpickled),
    builds the modality and the encoder through the installed plugins, and loads the weights
    strictly (their SHA-256 digest checked). No run folder is needed.

    Args:
        path: the exported file.
        device: where the encoder lives (and samples are tokenised to).
        registry: the plugin registry (default: the installed plugins).
    Returns:
        a :class:`PretrainedEncoder` in eval mode.
    Raises:
        OmnisslError: naming ``path`` when it is not an omnissl export, when the plugin of its
            modality is not installed, or when the installed plugin builds a different encoder.
    """
    from omnissl.errors import PluginError
    from omnissl.train.checkpoint import load_weights

    path = Path(path)
    header = read_header(path)
    registry = registry or get_registry()
    plugin = header["plugin"] or {}
    section = dict(header["modality"])
    name = section.pop("name", None)
    try:
        modality_factory = registry.get("modalities", str(name))
    except PluginError as exc:
        dist = plugin.get("distribution") or f"the plugin {plugin.get('name')!r}"
        raise OmnisslError(f"{path} holds an encoder of modality {name!r}, but no installed plugin provides that "
                           f"modality; install {dist} (version {plugin.get('version')} wrote this file), then "
                           f"load it again") from exc
    encoder_section = dict(header["encoder"])
    encoder_name = encoder_section.pop("name", None)
    try:
        encoder_factory = registry.get("encoders", str(encoder_name))
    except PluginError as exc:
        raise OmnisslError(f"{path} holds an encoder {encoder_name!r} that no installed plugin provides") from exc
    try:
        modality = modality_factory(**section)
        spec = modality.spec()
        encoder = encoder_factory(spec, modality, **encoder_section)
    except (TypeError, ValueError, OmnisslError) as exc:
        raise OmnisslError(f"{path}: the installed {name!r} plugin cannot rebuild this encoder from the file's "
                           f"modality {header['modality']} and encoder {header['encoder']} sections ({exc}); "
                           f"install the version that wrote it ({plugin.get('distribution')} "
                           f"{plugin.get('version')})") from exc
    if spec_json(modality) != header["spec"]:
        raise OmnisslError(f"{path}: the installed {name!r} plugin makes tokens {spec_json(modality)}, but the "
                           f"encoder was trained on {header['spec']}; install the version that wrote it "
                           f"({plugin.get('distribution')} {plugin.get('version')})")
    weights = load_weights(path)
    result = encoder.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise OmnisslError(f"{path}: its weights do not fit the encoder the recipe sections describe (missing "
                           f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}); the file is "
                           f"damaged or was written by another omnissl version")
    loaded = PretrainedEncoder(encoder, modality, header, source=str(path))
    loaded.registry = registry
    return loaded.to(device).eval()


class PretrainedEncoder(nn.Module):
    """A pre-trained encoder with its modality: raw samples in, features out.

    Call it with sample dicts (as the plugin's data sets yield them: an image's
    ``{"image": (C, H, W) in [0, 1]}``, an EEG window's ``{"signal", "positions", "types",
    "sfreq"}``...), one dict, or a ready :class:`~omnissl.TokenBatch`. Samples are tokenised
    the plugin's way, as training did without augmentation: ``modality.tokenize(sample, None)``
    for each, the core's collate, ``modality.on_device`` on the encoder's device. A TokenBatch is
    taken as the encoder sees it, that is after ``on_device`` (:meth:`prepare` makes one).

    It is an ordinary ``nn.Module``: fine-tune it, put a head on it. Gradients reach the encoder's
    weights (tokenisation itself is not differentiable).

    Attributes:
        encoder: the :class:`~omnissl.encoders.TokenEncoder`.
        modality: the :class:`~omnissl.Modality` (not a module: it holds no weights).
        readout: the modality's own pooling (``mean``, ``max`` or ``mean_max``): the default of ``pool``.
        header: what the file carries: ``modality``, ``encoder``, ``data`` sections, ``run_files``
            (plugins' per-run side files, e.g. ``audio_stats.json``), ``spec``, ``plugin``.
        dim: the width of pooled features (twice the encoder's width for ``mean_max``).
    """

    def __init__(self, encoder: nn.Module, modality: Modality, header: dict[str, Any], source: str = ""):
        super().__init__()
        self.encoder = encoder
        self.modality = modality
        self.header = header
        self.source = source
        self.readout = str(header.get("readout") or getattr(modality, "readout", "mean"))
        self.registry: Registry | None = None  # the registry that built it (load_encoder sets it)

    @property
    def dim(self) -> int:
        return self.encoder.dim * (2 if self.readout == "mean_max" else 1)

    @property
    def run_files(self) -> dict[str, Any]:
        """The plugins' per-run side files carried by the export (name -> parsed JSON)."""
        return dict(self.header.get("run_files") or {})

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def prepare(self, samples: dict[str, Any] | Sequence[dict[str, Any]]) -> TokenBatch:
        """The batch the encoder sees for ``samples`` (on its device): tokenise each sample
        without augmentation, collate, ``on_device``."""
        from omnissl.train.data import validate_tokens

        if isinstance(samples, dict):
            samples = [samples]
        if len(samples) == 0:
            raise DataError("no samples to encode")
        try:
            tokens = [self.modality.tokenize(sample, None) for sample in samples]
        except KeyError as exc:
            raise DataError(f"a {self.modality.name} sample has no {exc.args[0]!r}: pass sample dicts as the "
                            f"{self.modality.name} plugin's data sets yield them (see "
                            f"{type(self.modality).__name__}'s docstring)") from exc
        batch = self.modality.on_device(collate_tokens(tokens).to(self.device))
        validate_tokens(batch, self.modality.spec(), f"{self.modality.name} batch", "tokenize/on_device")
        return batch

    def forward(self, inputs: TokenBatch | dict[str, Any] | Sequence[dict[str, Any]],
                pool: PoolOrTokens | None = None) -> Tensor:
        """Features of a batch of samples.

        Args:
            inputs: sample dicts (or one), or a TokenBatch as :meth:`prepare` returns it.
            pool: ``mean``, ``max``, ``mean_max`` (mean and max concatenated), or ``none`` for the
                token features; default: the modality's readout.
        Returns:
            (B, dim) pooled float32 features, or with ``pool="none"`` (B, N, encoder width) token
            features with padding rows zeroed (``prepare(samples).pad`` marks them).
        """
        batch = inputs.to(self.device) if isinstance(inputs, TokenBatch) else self.prepare(inputs)
        features = self.encoder.forward_batch(batch).float()
        how = pool or self.readout
        if how == "none":
            return features.masked_fill(batch.pad[..., None], 0.0)
        return self.encoder.pool(features, batch.pad, how)

    @torch.no_grad()
    def features(self, samples: Iterable[dict[str, Any]] | Any, batch_size: int = 64,
                 pool: PoolOrTokens | None = None) -> np.ndarray:
        """Pooled features of many samples (a list, or any data set with ``len`` and ``[i]``),
        in batches, without gradients: (len(samples), dim) float32."""
        if pool == "none":
            raise OmnisslError("features() pools; call the module itself with pool='none' for token features")
        was_training = self.training
        self.eval()
        items = samples if hasattr(samples, "__getitem__") and hasattr(samples, "__len__") else list(samples)
        out = []
        for start in range(0, len(items), batch_size):
            chunk = [items[i] for i in range(start, min(start + batch_size, len(items)))]
            out.append(self(chunk, pool=pool).cpu().numpy())
        self.train(was_training)
        if not out:
            raise DataError("no samples to encode")
        return np.concatenate(out)

    def dataset(self, **options: Any) -> Any:
        """The run's data set, rebuilt from the carried ``data`` section with ``options`` replacing
        its keys (``dataset(root="/my/images")``): the run's own reading and preprocessing
        settings, on other data. It needs the plugin's data set and the data to exist."""
        from omnissl.recipe import CORE_KEYS, RESEARCH_KEYS

        section = dict(self.header.get("data") or {})
        name = section.pop("name", None)
        if name is None:
            raise OmnisslError(f"{self.source}: the export carries no data section")
        for key in (*CORE_KEYS.get("data", {}), *RESEARCH_KEYS.get("data", {})):
            section.pop(key, None)
        section.update(options)
        factory = (self.registry or get_registry()).get("datasets", str(name))
        try:
            return factory(**section)
        except TypeError as exc:
            raise OmnisslError(f"{self.source}: cannot build data set {name!r} with {section}: {exc}") from exc

    def extra_repr(self) -> str:
        return f"modality={self.modality.name!r}, readout={self.readout!r}, source={self.source!r}"


def accepts_keyword(function: Any, name: str) -> bool:
    """Whether ``function`` (a function, class or ``functools.partial``) takes the keyword ``name``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
