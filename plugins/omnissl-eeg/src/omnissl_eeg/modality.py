"""The EEG/MEG modality: one token per channel per time patch, placed by sensor position and time.

Tokens follow LaBraM (Jiang et al., ICLR 2024: one token per channel per 1 s patch at
200 Hz) and BrainOmni (Xiao et al., 2025: sensors described by position and type, so
EEG and MEG of any montage share one model). ``coords`` are the sensor's (x, y, z) in
metres (continuous, Fourier-encoded) and the patch index (grid, sin-cos encoded);
``kinds`` is the sensor type (eeg / mag / grad), an identity that stays visible when
the token is hidden; with ``channel_vocab`` a second ``kinds`` column holds a learned identity
for channels that have no position (``data.unknown_channels: index``).
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import torch
from torch import Tensor

from omnissl import CoordGroup, Modality, TargetStream, TokenBatch, Tokens, TokenSpec
from omnissl.datasets import Stack, read_stacks
from omnissl.errors import DataError, RecipeError
from omnissl.recipe import Range
from omnissl_eeg.sensors import SENSOR_TYPES
from omnissl_eeg.spectrum import patch_spectrum, spectral_loss

# Classical EEG bands in Hz (delta, theta, alpha, beta, low gamma) for the probe's baseline.
BANDS: tuple[tuple[float, float], ...] = ((1, 4), (4, 8), (8, 13), (13, 30), (30, 45))
MONTAGES_KEPT = 1024  # token layouts of montages tokenize_stacks keeps (all forgotten when full)


class EEGModality(Modality):
    """EEG/MEG windows as channel x time-patch tokens.

    Samples are dicts with ``signal`` (C, T) float in field units (uV, fT, fT/cm),
    ``positions`` (C, 3) metres, ``types`` (C,) index into ``("eeg", "mag", "grad")``,
    ``sfreq``, and optionally ``identities`` (C,) int: 0 for a channel with a position, else
    1 + its index in the data set's ``channel_vocabulary``: what the data sets of this plugin return.

    Args:
        sfreq: sampling rate the data were resampled to (checked against every sample).
        patch_seconds: patch length in seconds (LaBraM, CBraMod: 1 s).
        amplitude_scale: values are divided by it (100: LaBraM's 0.1 mV units for EEG).
        target: ``"raw"`` (reconstruct the patch samples), ``"spectral"`` (Fourier amplitude and
            phase, as LaBraM) or ``"both"`` (two streams, each with its own loss).
        spectral_weight: weight of the spectral stream in the total loss.
        position_scale: length scale in metres of the sensor-position Fourier features.
        channel_vocab: size of the learned identity table of channels without a position
            (``data.unknown_channels: index``), at least 1 + the number of such channel names;
            0: no identity column (every channel must have a position).
    """

    name = "eeg"
    on_device_keeps_spec = True  # it scales values and adds a target; shapes are tokenize's

    def __init__(self, sfreq: Annotated[float, Range(gt=0)] = 200.0, patch_seconds: Annotated[float, Range(gt=0)] = 1.0,
                 amplitude_scale: Annotated[float, Range(gt=0)] = 100.0,
                 target: str = "raw", spectral_weight: Annotated[float, Range(ge=0)] = 1.0,
                 position_scale: Annotated[float, Range(gt=0)] = 0.05,
                 channel_vocab: Annotated[int, Range(ge=0)] = 0):
        if target not in ("raw", "spectral", "both"):
            raise RecipeError(f"modality.target must be raw, spectral or both, got {target!r}")
        self.patch = int(round(sfreq * patch_seconds))
        if self.patch < 2:
            raise RecipeError(f"modality.patch_seconds={patch_seconds} at {sfreq} Hz gives {self.patch} samples; "
                              f"a patch needs at least 2")
        self.sfreq = float(sfreq)
        self.amplitude_scale = float(amplitude_scale)
        self.target = target
        self.spectral_weight = float(spectral_weight)
        self.position_scale = float(position_scale)
        self.channel_vocab = int(channel_vocab)
        # data set -> window length -> tables, forgotten with the data set
        self._tables: weakref.WeakKeyDictionary[Any, dict[int, _MontageTables]] = weakref.WeakKeyDictionary()
        self._layouts: dict[tuple, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}  # montage -> tokens' layout

    def spec(self) -> TokenSpec:
        return TokenSpec(value_dim=self.patch,
                         coords=(CoordGroup("continuous", 3, self.position_scale), CoordGroup("grid", 1)),
                         kind_vocab=(len(SENSOR_TYPES), self.channel_vocab) if self.channel_vocab
                         else (len(SENSOR_TYPES),))

    def target_streams(self) -> list[TargetStream]:
        streams = []
        if self.target in ("raw", "both"):
            streams.append(TargetStream("values"))
        if self.target in ("spectral", "both"):
            streams.append(TargetStream("spectrum", dim=2 * (self.patch // 2 + 1), loss=spectral_loss,
                                        weight=self.spectral_weight, normalize=False))
        return streams

    def tokenize(self, sample: dict[str, Any], rng: np.random.Generator | None) -> Tokens:
        """(C, T) signal -> C * (T // patch) tokens, channel-major (token ``c * P + p``), values
        still in field units (uV, fT, fT/cm); :meth:`on_device` scales them and adds the
        spectral target.

        No augmentation: ``rng`` is unused (masking is the only randomness MAE needs).
        """
        source = sample.get("source", "sample")
        self._check_rate(sample["sfreq"], source)
        signal = torch.as_tensor(np.asarray(sample["signal"], dtype=np.float32))  # [C, T]
        channels, length = signal.shape
        patches = self._patches(length, source)
        values = signal[:, : patches * self.patch].reshape(channels * patches, self.patch)  # field units
        identities = self._identities(sample.get("identities"), channels, source)
        coords, kinds = token_layout(sample["positions"], sample["types"], patches, identities)
        meta = {"channels": list(sample.get("channels", [])), "num_channels": channels, "num_patches": patches}
        return Tokens(values=values, coords=torch.from_numpy(coords), kinds=torch.from_numpy(kinds), meta=meta)

    def tokenize_batch(self, dataset: Any, indices: Sequence[int], seeds: Sequence[int | None]) -> TokenBatch:
        """The same TokenBatch as tokenising each window and padding, without a Python loop
        over samples, for this plugin's data sets (others take the default path).

        The data set copies each window from its memory map into the batch once
        (:meth:`WindowDataset.get_batch`); channel-major token order then makes
        tokenising a reshape: (B, C, P * patch) is (B, C * P, patch). A recording with fewer
        channels than the widest in the batch has zero channels after its real ones, so its
        padding tokens form the tail, as the core's collate would put them. Coordinates,
        kinds, padding and metadata depend only on the recording's montage: they are built
        once per montage (:meth:`_montage_tables`) and gathered.
        """
        get_batch = getattr(dataset, "get_batch", None)
        length = getattr(dataset, "window_length", None)
        if not callable(get_batch) or length is None:
            return self.tokenize_stacks(read_stacks(dataset, indices), len(indices))
        tables = self._montage_tables(dataset, length)
        samples = get_batch(indices, samples=tables.patches * self.patch)  # whole patches only: one copy
        signal = torch.from_numpy(samples["signal"])  # [B, C, P * patch] in field units
        batch, channels, _ = signal.shape
        tokens = channels * tables.patches
        values = signal.view(batch, tokens, self.patch)
        montage = tables.montage_of[samples["recording"]]  # [B]
        # numpy gathers: on these small arrays its calls cost ~2 us where torch's cost ~10 us
        # (and torch's advanced indexing ran 2000x slower on two busy cores).
        pad = torch.from_numpy(tables.pad[:, :tokens][montage])
        coords = torch.from_numpy(tables.coords[:, :tokens][montage])
        kinds = torch.from_numpy(tables.kinds[:, :tokens][montage])
        meta = [tables.meta[m] for m in montage.tolist()]  # shared per montage: read-only
        return TokenBatch(values=values, coords=coords, pad=pad, kinds=kinds, meta=meta)

    def tokenize_stacks(self, stacks: Sequence[Stack], batch: int) -> TokenBatch:
        """The same TokenBatch as tokenising each of ``batch`` windows and padding, for windows
        read from another data set than this plugin's own (shards, mixtures, ...) as stacks of
        windows that share a recording's channels (:func:`omnissl.datasets.read_stacks`).

        A stack's (n, C, T) signal becomes its rows' (n, C * P, patch) values with one reshape,
        as in :meth:`tokenize_batch`: when the batch is one stack of float32 windows of whole
        patches, the values are the stack's signal itself (no copy: a Stack's arrays are the
        batch's own), else they are copied once; coordinates and kinds are built once per montage and kept
        (:meth:`_layout`), then written into the stack's rows. A stack whose windows do not all
        share one montage (positions, types, identities) is taken row by row.
        """
        parts = []  # (rows, stacked sample) of one montage each
        for stack in stacks:
            if _one_montage(stack.sample):
                parts.append((stack.rows, stack.sample))
            else:
                parts += [(stack.rows[k:k + 1], _row(stack.sample, k)) for k in range(len(stack.rows))]
        shapes = []
        for _, sample in parts:  # [n, C, T] signal, each part's tokens and patches
            source = sample.get("source", "sample")
            self._check_rate(sample["sfreq"], source)
            channels, length = np.shape(sample["signal"])[1:]
            shapes.append((channels, self._patches(length, source)))
        tokens = max(channels * patches for channels, patches in shapes)
        if len(parts) == 1 and parts[0][0].tolist() == list(range(batch)):  # one montage, rows in order
            (_, sample), (channels, patches) = parts[0], shapes[0]
            signal = sample["signal"][:, :, :patches * self.patch]  # [B, C, P * patch]
            if isinstance(signal, np.ndarray) and signal.flags.writeable:  # the batch's own (a Stack's arrays are)
                values = np.ascontiguousarray(signal, dtype=np.float32)  # whole patches, float32: a view
            else:
                values = np.array(signal, dtype=np.float32)  # [B, C, P * patch], a copy the batch owns
            values = values.reshape(batch, tokens, self.patch)  # [B, N, patch]: a view
            coords, kinds, meta = self._layout(sample, channels, patches)
            return TokenBatch(values=torch.from_numpy(values),
                              coords=torch.from_numpy(np.repeat(coords[None], batch, 0)),
                              pad=torch.zeros((batch, tokens), dtype=torch.bool),
                              kinds=torch.from_numpy(np.repeat(kinds[None], batch, 0)), meta=[meta] * batch)
        values = np.zeros((batch, tokens, self.patch), dtype=np.float32)  # [B, N, patch], padding zero
        coords = np.zeros((batch, tokens, 4), dtype=np.float32)
        kinds = np.zeros((batch, tokens, 2 if self.channel_vocab else 1), dtype=np.int64)
        pad = np.ones((batch, tokens), dtype=bool)
        meta: list[Any] = [None] * batch
        for (rows, sample), (channels, patches) in zip(parts, shapes):
            n = channels * patches
            signal = np.asarray(sample["signal"], dtype=np.float32)[:, :, :patches * self.patch]
            values[rows, :n] = signal.reshape(len(rows), n, self.patch)
            layout = self._layout(sample, channels, patches)
            coords[rows, :n], kinds[rows, :n], pad[rows, :n] = layout[0], layout[1], False
            for row in rows.tolist():
                meta[row] = layout[2]  # shared per montage: read-only
        return TokenBatch(values=torch.from_numpy(values), coords=torch.from_numpy(coords), pad=torch.from_numpy(pad),
                          kinds=torch.from_numpy(kinds), meta=meta)

    def _layout(self, sample: dict[str, Any], channels: int, patches: int
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Coordinates, kinds and metadata of a montage's tokens (a stack's first row's), built
        on first use and kept (a bounded number of montages)."""
        identities = sample.get("identities")
        key = (tuple(sample.get("channels", ())), np.asarray(sample["positions"][0]).tobytes(),
               np.asarray(sample["types"][0]).tobytes(),
               b"" if identities is None else np.asarray(identities[0]).tobytes(), patches)
        layout = self._layouts.get(key)
        if layout is None:
            ids = self._identities(None if identities is None else identities[0], channels,
                                   sample.get("source", "sample"))
            coords, kinds = token_layout(sample["positions"][0], sample["types"][0], patches, ids)
            meta = {"channels": list(sample.get("channels", [])), "num_channels": channels, "num_patches": patches}
            if len(self._layouts) >= MONTAGES_KEPT:
                self._layouts.clear()
            layout = self._layouts[key] = (coords, kinds, meta)
        return layout

    def on_device(self, batch: TokenBatch) -> TokenBatch:
        """Divide the values by ``amplitude_scale`` (in place: the batch is the loader's, made
        for this call) and compute the spectral target, on the training device, as LaBraM
        scales its batches on the GPU, where both cost microseconds; in the loader the division
        was a second pass over the batch (a fifth of its time) and the FFT more. Zero padding
        stays zero."""
        values = batch.values.div_(self.amplitude_scale)
        targets = dict(batch.targets)
        if self.target in ("spectral", "both"):
            targets["spectrum"] = patch_spectrum(values).masked_fill_(batch.pad[..., None], 0.0)
        return dataclasses.replace(batch, values=values, targets=targets)

    def _montage_tables(self, dataset: Any, length: int) -> _MontageTables:
        """Token tables of each distinct montage (channel names, positions, types) of
        ``dataset``'s recordings, for windows of ``length`` samples; built on first use and
        kept while the data set lives. Checks every recording's rate once."""
        cached = self._tables.setdefault(dataset, {})
        if length in cached:
            return cached[length]
        for w, source in zip(dataset.recordings, dataset.sources):
            self._check_rate(w.sfreq, source)
        patches = self._patches(length, dataset.sources[0])
        montages: dict[tuple, int] = {}
        montage_of = np.empty(len(dataset.recordings), dtype=np.int64)
        members: list[tuple[Any, int]] = []  # (windows, recording index) of each montage's first recording
        identity_of = getattr(dataset, "identities", None) or [None] * len(dataset.recordings)
        for r, w in enumerate(dataset.recordings):
            identity = b"" if identity_of[r] is None else np.asarray(identity_of[r]).tobytes()
            ident = (tuple(w.channels), w.positions.tobytes(), w.types.tobytes(), identity)
            montage_of[r] = montages.setdefault(ident, len(montages))
            if montage_of[r] == len(members):
                members.append((w, r))
        width = max(len(w.channels) for w, _ in members)
        tokens = width * patches
        counts = np.array([len(w.channels) for w, _ in members])
        pad = np.arange(tokens)[None, :] >= (counts * patches)[:, None]  # [M, C_max * P]
        coords = np.zeros((len(members), tokens, 4), dtype=np.float32)
        kinds = np.zeros((len(members), tokens, 2 if self.channel_vocab else 1), dtype=np.int64)
        for m, (w, r) in enumerate(members):
            n = counts[m] * patches
            identities = self._identities(identity_of[r], len(w.channels), dataset.sources[r])
            coords[m, :n], kinds[m, :n] = token_layout(w.positions, w.types, patches, identities)
        meta = [{"channels": list(w.channels), "num_channels": int(c), "num_patches": patches}
                for (w, _), c in zip(members, counts)]
        cached[length] = _MontageTables(patches, montage_of, pad, coords, kinds, meta)
        return cached[length]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tables"] = weakref.WeakKeyDictionary()  # weak references do not pickle; a worker builds its own
        state["_layouts"] = {}
        return state

    def _identities(self, identities: Any, channels: int, source: str) -> np.ndarray | None:
        """The identity column of a sample's channels: None without ``channel_vocab``; a
        :class:`DataError` when the data set identifies channels by index and the table is
        missing or too small for them."""
        ids = np.zeros(channels, np.int64) if identities is None else np.asarray(identities, dtype=np.int64)
        largest = int(ids.max()) if ids.size else 0
        if largest >= max(self.channel_vocab, 1):
            raise DataError(f"{source}: {largest} channel names have no position and are identified by index "
                            f"(data.unknown_channels: index), but modality.channel_vocab is {self.channel_vocab}; "
                            f"set modality.channel_vocab to at least {largest + 1} (one more than the data set's "
                            f"channel_vocabulary) so that the encoder learns an identity for each")
        return ids if self.channel_vocab else None

    def _check_rate(self, rate: float, source: str) -> None:
        if abs(float(rate) - self.sfreq) > 1e-6:
            raise DataError(f"{source}: data at {rate} Hz but modality.sfreq is {self.sfreq}; "
                            f"set data.sfreq and modality.sfreq to the same rate")

    def _patches(self, length: int, source: str) -> int:
        if length < self.patch:
            raise DataError(f"{source}: a window of {length} samples is shorter than one patch ({self.patch}); "
                            f"lengthen data.window_seconds or shorten modality.patch_seconds")
        return length // self.patch

    def baseline_features(self, sample: dict[str, Any]) -> np.ndarray:
        """Log band powers (Welch) of every channel in the classical delta..gamma bands: (C * 5,)."""
        from scipy.signal import welch

        signal = np.asarray(sample["signal"], dtype=np.float64)
        freqs, power = welch(signal, fs=self.sfreq, nperseg=min(signal.shape[1], int(2 * self.sfreq)))
        bands = [power[:, (freqs >= lo) & (freqs < hi)].mean(axis=1) for lo, hi in BANDS]
        return np.log(np.stack(bands, axis=1) + 1e-12).ravel()

    def visualize(self, batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path) -> Path:
        from omnissl_eeg.viz import plot_traces

        return plot_traces(batch, hidden, predictions, path, self.patch, self.sfreq, self.amplitude_scale)


def _one_montage(sample: dict[str, Any]) -> bool:
    """Whether every row of a stacked sample has the first row's positions, types and identities."""
    values = (sample["positions"], sample["types"], sample.get("identities"))  # [n, C, ...] each
    return all(value is None or value.tobytes() == value[0].tobytes() * len(value) for value in values)


def _row(sample: dict[str, Any], k: int) -> dict[str, Any]:
    """Row ``k`` of a stacked sample, as a stack of one."""
    return {key: value[k:k + 1] if isinstance(value, np.ndarray) else value for key, value in sample.items()}


def token_layout(positions: Any, types: Any, patches: int,
                 identities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (C * P, 4) float32, each sensor's (x, y, z) then the patch index, and kinds
    (C * P, 1) int64, the sensor type (and the channel identity as a second column when
    ``identities`` (C,) is given), in channel-major token order (token ``c * P + p``): the one
    layout that per-sample ``tokenize`` and the batched montage tables both use."""
    positions = np.asarray(positions, dtype=np.float32)
    types = np.asarray(types, dtype=np.int64)
    channels = len(types)
    coords = np.empty((channels * patches, 4), dtype=np.float32)
    coords[:, :3] = np.repeat(positions, patches, axis=0)
    coords[:, 3] = np.tile(np.arange(patches, dtype=np.float32), channels)
    kinds = np.repeat(types, patches)[:, None]
    if identities is not None:
        kinds = np.concatenate([kinds, np.repeat(np.asarray(identities, dtype=np.int64), patches)[:, None]], axis=1)
    return coords, kinds


@dataclass
class _MontageTables:
    """Per-montage token tables for one window length (see EEGModality._montage_tables).

    ``montage_of`` (R,) maps each recording to its montage; ``pad`` (M, N), ``coords``
    (M, N, 4) and ``kinds`` (M, N, 1 or 2) cover N = widest montage's channels x ``patches``
    tokens, zero (and True in ``pad``) after a montage's own channels; ``meta`` one dict
    per montage.
    """

    patches: int
    montage_of: np.ndarray
    pad: np.ndarray
    coords: np.ndarray
    kinds: np.ndarray
    meta: list[dict[str, Any]]
