"""A pre-trained EEG/MEG encoder as a braindecode model: ``(batch, channels, times)`` in,
``(batch, n_outputs)`` out.

braindecode (Schirrmeister et al., "Deep learning with convolutional neural networks for EEG
decoding and visualization", Human Brain Mapping 2017) trains plain ``nn.Module`` s that take
windows ``(batch, n_chans, n_times)`` and are built from the signal's description: ``n_outputs``,
``n_chans``, ``n_times``, ``chs_info`` (MNE's ``info["chs"]``), ``input_window_seconds``,
``sfreq``; its ``EEGClassifier`` / ``EEGRegressor`` infer those it can from the data and pass
them as keywords. :class:`OmnisslEEGEncoder` takes the same keywords, so it drops into
braindecode's training code like one of its own models::

    omnissl export runs/eeg --to braindecode --out eeg_encoder.safetensors

    from braindecode import EEGClassifier
    from omnissl_eeg.braindecode import OmnisslEEGEncoder

    clf = EEGClassifier(OmnisslEEGEncoder, module__export="eeg_encoder.safetensors",
                        module__chs_info=windows_dataset.datasets[0].raw.info["chs"],  # or module__ch_names=[...]
                        criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, lr=1e-4,
                        train_split=None, batch_size=32, max_epochs=30)
    clf.fit(windows_dataset, y=None)
    # or on its own: OmnisslEEGEncoder.from_export("eeg_encoder.safetensors", n_outputs=4, ch_names=names)

**What the input must be.** The EEG modality tokenises each channel's window into patches of
``sfreq * patch_seconds`` samples (the remainder of a window that is not a whole patch is left
out), places each token by its sensor's position (metres) and type and its patch index, and
divides the values, in field units (microvolts for EEG, femtotesla for magnetometers,
femtotesla per centimetre for gradiometers), by ``modality.amplitude_scale``. So the windows
must be:

- at the recipe's ``sfreq`` (``modality.sfreq``; checked against ``sfreq=`` when given);
- preprocessed as the training data were: the ``data`` section's band-pass (``l_freq``,
  ``h_freq``), line-noise notch, resampling and re-reference; the exporter's JSON side file
  lists them as braindecode ``Preprocessor`` steps (``braindecode_preprocessors``);
- in MNE's SI units (volts, tesla, tesla per metre), as braindecode's windows data sets give
  them, with ``input_unit="SI"`` (the default: the module scales each channel by its type's
  factor, 1e6 for EEG, 1e15 for magnetometers, 1e13 for gradiometers); or already in field
  units (omnissl's data sets, or a braindecode pipeline that multiplied by 1e6) with
  ``input_unit="field"``;
- with the channels in the order ``ch_names`` / ``chs_info`` name them. A channel's position is
  its own location (``chs_info[i]["loc"][:3]``, when set) or, for EEG, the 10-05 template
  position of its name; channels the run identified by index (``data.unknown_channels: index``)
  take the learned identity the export carries (``eeg_channels.json``).

The output is a linear head (``final_layer``) over the pooled token features (the modality's
readout, mean over tokens, unless ``pool=`` says otherwise); ``n_outputs=0`` or None returns the
pooled features themselves (``feature_dim`` wide).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from omnissl.errors import DataError, OmnisslError
from omnissl.train.checkpoint import write_text_atomic
from omnissl.export import PretrainedEncoder, export_safetensors, load_encoder, wrong_modality
from omnissl.tokens import TokenBatch
from omnissl_eeg.modality import token_layout
from omnissl_eeg.sensors import SENSOR_TYPES, UNIT_NAME, UNIT_SCALE, lookup_position

CHANNELS_FILE = "eeg_channels.json"  # the run's channel identities, written at train start (plugin.py)
# MNE's FIFF constants: channel kinds and units of info["chs"] entries
_FIFFV_MEG_CH, _FIFFV_EEG_CH, _FIFF_UNIT_T_M = 1, 2, 201


def channels_from_info(chs_info: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[np.ndarray | None]]:
    """Names, sensor types and own positions (None when unset) of MNE ``info["chs"]`` entries.

    Raises:
        DataError: naming a channel that is neither EEG nor MEG.
    """
    names, types, positions = [], [], []
    for ch in chs_info:
        name = str(ch["ch_name"])
        kind = int(ch.get("kind", _FIFFV_EEG_CH))
        if kind == _FIFFV_EEG_CH:
            types.append("eeg")
        elif kind == _FIFFV_MEG_CH:
            types.append("grad" if int(ch.get("unit", 0)) == _FIFF_UNIT_T_M else "mag")
        else:
            raise DataError(f"channel {name!r} is neither EEG nor MEG (FIFF kind {kind}); pick the EEG/MEG "
                            f"channels before the model (braindecode's Preprocessor('pick', picks=['eeg']))")
        loc = np.asarray(ch.get("loc", np.full(3, np.nan)), dtype=np.float64)[:3]
        positions.append(loc.astype(np.float32) if np.all(np.isfinite(loc)) and np.linalg.norm(loc) > 1e-6
                         else None)
        names.append(name)
    return names, types, positions


def braindecode_preprocessors(data: dict[str, Any]) -> list[list[Any]]:
    """The recipe's EEG preprocessing as ``[method, kwargs]`` steps of MNE methods, in the plugin's
    order, for ``braindecode.preprocessing.Preprocessor(method, **kwargs)``."""
    steps: list[list[Any]] = [["pick", {"picks": list(data.get("pick") or SENSOR_TYPES)}]]
    l_freq, h_freq, notch = data.get("l_freq"), data.get("h_freq"), data.get("notch")
    sfreq = float(data.get("sfreq", 200.0))
    if l_freq is not None or h_freq is not None:
        steps.append(["filter", {"l_freq": l_freq, "h_freq": h_freq}])
    if notch is not None:  # the plugin removes the line and its harmonics below the recording's Nyquist rate
        steps.append(["notch_filter", {"freqs": [float(f) for f in np.arange(notch, sfreq / 2, notch)]}])
    steps.append(["resample", {"sfreq": sfreq}])
    if data.get("reference") == "average":
        steps.append(["set_eeg_reference", {"ref_channels": "average"}])
    return steps


class OmnisslEEGEncoder(nn.Module):
    """An exported omnissl EEG/MEG encoder with braindecode's model interface.

    Args:
        export: the file ``omnissl export RUN --to braindecode`` (or ``--to safetensors``) wrote, or
            a :class:`~omnissl.export.PretrainedEncoder` already loaded.
        n_outputs: outputs of the linear head (classes, targets); 0 or None: no head, the module
            returns the pooled features.
        n_chans: number of channels (checked against the channel names).
        chs_info: MNE's ``info["chs"]`` of the input's channels (names, types, locations).
        n_times: samples per window (checked: at least one patch).
        input_window_seconds: window length; gives ``n_times`` when that is not set.
        sfreq: the windows' sampling rate; must equal the encoder's ``modality.sfreq``.
        ch_names: channel names, when there is no ``chs_info`` (EEG electrodes placed at their
            10-05 template positions).
        ch_types: sensor type of each named channel (``eeg``, ``mag``, ``grad``); default all EEG.
        input_unit: ``"SI"`` for volts / tesla / tesla per metre (MNE and braindecode), ``"field"``
            for microvolts / femtotesla / femtotesla per centimetre (omnissl's data sets).
        pool: ``mean``, ``max`` or ``mean_max``; default the modality's readout.
        device: where the encoder is loaded (when ``export`` is a path).
    """

    def __init__(self, export: str | Path | PretrainedEncoder, n_outputs: int | None = None,
                 n_chans: int | None = None, chs_info: Sequence[dict[str, Any]] | None = None,
                 n_times: int | None = None, input_window_seconds: float | None = None,
                 sfreq: float | None = None, ch_names: Sequence[str] | None = None,
                 ch_types: str | Sequence[str] | None = None, input_unit: Literal["SI", "field"] = "SI",
                 pool: Literal["mean", "max", "mean_max"] | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        pretrained = export if isinstance(export, PretrainedEncoder) else load_encoder(export, device=device)
        where = pretrained.source or "the encoder"
        if pretrained.modality.name != "eeg":
            raise OmnisslError(f"{where} holds a {pretrained.modality.name!r} encoder; OmnisslEEGEncoder takes eeg "
                               f"encoders (omnissl export RUN --to braindecode on an eeg run)")
        if input_unit not in ("SI", "field"):
            raise OmnisslError(f"input_unit must be 'SI' (volts, tesla) or 'field' (uV, fT, fT/cm), got {input_unit!r}")
        modality = pretrained.modality
        self.encoder = pretrained.encoder
        self.modality = modality
        self.source = pretrained.source
        self.patch = int(modality.patch)
        self.amplitude_scale = float(modality.amplitude_scale)
        self.input_unit = input_unit
        self.pool = pool or pretrained.readout
        if sfreq is not None and abs(float(sfreq) - modality.sfreq) > 1e-6:
            raise DataError(f"the windows are at {sfreq} Hz, but {where} was pre-trained at {modality.sfreq} Hz; "
                            f"resample them (braindecode's Preprocessor('resample', sfreq={modality.sfreq}))")
        self.sfreq = modality.sfreq
        if n_times is None and input_window_seconds is not None:
            n_times = int(round(float(input_window_seconds) * modality.sfreq))
        if n_times is not None and int(n_times) < self.patch:
            raise DataError(f"windows of {n_times} samples are shorter than one patch ({self.patch} samples at "
                            f"{modality.sfreq} Hz); use longer windows")
        self.n_times = None if n_times is None else int(n_times)
        self.input_window_seconds = None if n_times is None else self.n_times / modality.sfreq

        names, types, positions = self._describe_channels(chs_info, ch_names, ch_types, where)
        if n_chans is not None and int(n_chans) != len(names):
            raise DataError(f"n_chans={n_chans} but {len(names)} channels are named; give one name (or chs_info "
                            f"entry) per input channel, in the input's order")
        vocabulary = list((pretrained.run_files.get(CHANNELS_FILE) or {}).get("channel_vocabulary") or [])
        identities = np.zeros(len(names), dtype=np.int64)
        unplaced = []
        for i, (name, kind) in enumerate(zip(names, types)):
            if positions[i] is None and kind == "eeg":
                positions[i] = lookup_position(name)
            if positions[i] is None:
                if modality.channel_vocab and name in vocabulary:
                    identities[i] = 1 + vocabulary.index(name)
                    positions[i] = np.zeros(3, np.float32)
                else:
                    unplaced.append(name)
        if unplaced:
            known = f"; the channels it knows by index are {vocabulary}" if vocabulary else ""
            raise DataError(f"no position for channel(s) {', '.join(unplaced)}: not 10-05 electrode names, and no "
                            f"location in chs_info{known}. Pass chs_info with the sensors' locations (an MNE "
                            f"montage) or rename the channels to 10-05 names")
        self.ch_names = list(names)
        self.ch_types = list(types)
        self.chs_info = list(chs_info) if chs_info is not None else None
        self.n_chans = len(names)
        self._positions = np.stack(positions).astype(np.float32)
        self._types = np.array([SENSOR_TYPES.index(t) for t in types], dtype=np.int64)
        self._identities = identities if modality.channel_vocab else None
        scale = [UNIT_SCALE[t] if input_unit == "SI" else 1.0 for t in types]
        self.register_buffer("unit_scale", torch.tensor(scale, dtype=torch.float32)[:, None], persistent=False)
        self._layouts: dict[int, tuple[Tensor, Tensor]] = {}

        self.feature_dim = self.encoder.dim * (2 if self.pool == "mean_max" else 1)
        self.n_outputs = int(n_outputs) if n_outputs else None
        self.final_layer = nn.Linear(self.feature_dim, self.n_outputs) if self.n_outputs else nn.Identity()
        self.to(pretrained.device)

    @classmethod
    def from_export(cls, path: str | Path, n_outputs: int | None = None, ch_names: Sequence[str] | None = None,
                    **kwargs: Any) -> "OmnisslEEGEncoder":
        """The module for the export at ``path``; keywords as the constructor's."""
        return cls(path, n_outputs=n_outputs, ch_names=ch_names, **kwargs)

    @staticmethod
    def _describe_channels(chs_info: Sequence[dict[str, Any]] | None, ch_names: Sequence[str] | None,
                           ch_types: str | Sequence[str] | None,
                           where: str) -> tuple[list[str], list[str], list[np.ndarray | None]]:
        if chs_info is not None:
            return channels_from_info(chs_info)
        if ch_names is None:
            raise DataError(f"{where}: OmnisslEEGEncoder places each token by its sensor, so it needs the channels: "
                            f"chs_info=info['chs'] (braindecode: module__chs_info=...) or ch_names=[...] (with "
                            f"ch_types for MEG); n_chans alone does not say where they are")
        names = [str(n) for n in ch_names]
        types = [ch_types] * len(names) if isinstance(ch_types, str) else list(ch_types or ["eeg"] * len(names))
        if len(types) != len(names) or any(t not in SENSOR_TYPES for t in types):
            raise DataError(f"ch_types must be one of {', '.join(SENSOR_TYPES)} per channel ({len(names)}), "
                            f"got {ch_types!r}")
        return names, types, [None] * len(names)

    def _layout(self, patches: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Coordinates (N, 4) and kinds (N, G) of the tokens of a window of ``patches`` patches."""
        if patches not in self._layouts:
            coords, kinds = token_layout(self._positions, self._types, patches, self._identities)
            self._layouts[patches] = (torch.from_numpy(coords), torch.from_numpy(kinds))
        coords, kinds = self._layouts[patches]
        return coords.to(device), kinds.to(device)

    def tokens(self, x: Tensor) -> TokenBatch:
        """The token batch of windows ``x`` (batch, n_chans, n_times), as the EEG modality makes it
        (tokenize, then on_device's division by ``amplitude_scale``)."""
        if x.ndim != 3 or x.shape[1] != self.n_chans:
            raise DataError(f"expected windows of shape (batch, {self.n_chans} channels, times), got "
                            f"{tuple(x.shape)}")
        batch, channels, length = x.shape
        patches = length // self.patch
        if patches == 0:
            raise DataError(f"windows of {length} samples are shorter than one patch ({self.patch} samples)")
        values = x[..., :patches * self.patch].float()
        if self.input_unit == "SI":
            values = values * self.unit_scale
        values = values.reshape(batch, channels * patches, self.patch) / self.amplitude_scale
        coords, kinds = self._layout(patches, values.device)
        n = channels * patches
        return TokenBatch(values=values, coords=coords.expand(batch, n, -1), kinds=kinds.expand(batch, n, -1),
                          pad=torch.zeros(batch, n, dtype=torch.bool, device=values.device))

    def features(self, x: Tensor) -> Tensor:
        """Pooled token features of windows ``x``: (batch, feature_dim)."""
        batch = self.tokens(x)
        return self.encoder.pool(self.encoder.forward_batch(batch).float(), batch.pad, self.pool)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, n_chans, n_times) windows -> (batch, n_outputs), or (batch, feature_dim) without a head."""
        return self.final_layer(self.features(x))

    def extra_repr(self) -> str:
        units = "SI" if self.input_unit == "SI" else "/".join(UNIT_NAME[t] for t in sorted(set(self.ch_types)))
        return (f"n_chans={self.n_chans}, n_times={self.n_times}, sfreq={self.sfreq}, n_outputs={self.n_outputs}, "
                f"input_unit={units!r}, pool={self.pool!r}")


def channel_state(dataset: Any) -> dict[str, Any]:
    """What the run's channels were: the names identified by index (in identity order) and the
    distinct montages (channel-name lists, at most 20), from a data set of this plugin."""
    montages: list[list[str]] = []
    for recording in getattr(dataset, "recordings", []):
        names = list(recording.channels)
        if names not in montages:
            montages.append(names)
    return {"channel_vocabulary": list(getattr(dataset, "channel_vocabulary", []) or []),
            "montages": montages[:20], "num_montages": len(montages)}


def export_braindecode(encoder: nn.Module, recipe: dict[str, Any], out: Path, run_dir: Path | None = None,
                       registry: Any = None) -> Path:
    """Write ``out`` (an omnissl encoder export, as ``--to safetensors``) and ``out.json`` (how to
    use it in braindecode: the class, the input's rate, units and preprocessing); this is
    ``omnissl export RUN_DIR --to braindecode --out FILE`` for EEG/MEG runs.

    The channel identities of a run with ``data.unknown_channels: index`` travel in the file:
    from the run's ``eeg_channels.json``, or, for runs trained before it was written, from its
    data set, rebuilt here.
    """
    modality = dict(recipe.get("modality", {}))
    if modality.get("name") != "eeg":
        raise wrong_modality("braindecode", modality.get("name"), ("eeg",), registry)
    extra: dict[str, Any] = {}
    if not (run_dir is not None and (Path(run_dir) / CHANNELS_FILE).is_file()) and modality.get("channel_vocab"):
        from omnissl.build import build_dataset
        from omnissl.plugins import get_registry
        from omnissl.recipe import validate

        registry = registry or get_registry()
        extra[CHANNELS_FILE] = channel_state(build_dataset(validate(recipe, registry, "recipe.yaml"), registry))
    out = export_safetensors(encoder, recipe, Path(out), run_dir=run_dir, registry=registry, extra_files=extra)
    loaded = load_encoder(out, registry=registry)  # what users will load: check it, and describe it
    data = dict(recipe.get("data", {}))
    vocabulary = (loaded.run_files.get(CHANNELS_FILE) or {})
    info = {
        "target": "braindecode",
        "class": "omnissl_eeg.braindecode.OmnisslEEGEncoder",
        "load": "OmnisslEEGEncoder.from_export(PATH, n_outputs=N, ch_names=[...]) or EEGClassifier("
                "OmnisslEEGEncoder, module__export=PATH, module__chs_info=info['chs'], ...)",
        "sfreq": loaded.modality.sfreq,
        "patch_samples": loaded.modality.patch,
        "amplitude_scale": loaded.modality.amplitude_scale,
        "input": {"shape": ["batch", "n_chans", "n_times"],
                  "unit": "input_unit='SI': V (EEG), T (mag), T/m (grad), as MNE and braindecode; "
                          "input_unit='field': uV, fT, fT/cm",
                  "n_times": f"any; whole patches of {loaded.modality.patch} samples are used, the rest is left out"},
        "braindecode_preprocessors": braindecode_preprocessors(data),
        "preprocessing": {k: data.get(k) for k in ("pick", "l_freq", "h_freq", "notch", "sfreq", "reference",
                                                    "window_seconds", "unknown_channels") if k in data},
        "channel_vocabulary": vocabulary.get("channel_vocabulary", []),
        "training_montages": vocabulary.get("montages", []),
        "feature_dim": loaded.dim,
        "readout": loaded.readout,
    }
    write_text_atomic(Path(f"{out}.json"), json.dumps(info, indent=2) + "\n", "export instructions")
    return out


export_braindecode.modalities = ("eeg",)  # omnissl export refuses other runs, naming what takes them
EXPORTERS = {"braindecode": export_braindecode}
