"""The token contract: what every modality turns its data into.

A sample becomes :class:`Tokens` (one variable-length set of tokens with
coordinates); :func:`collate_tokens` pads a list of them into a
:class:`TokenBatch`. The core never looks inside ``values``: pixels, EEG
segments, atom features and splat groups are all just vectors with a position.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class CoordGroup:
    """A run of coordinate columns that share one positional encoding.

    Attributes:
        kind: ``"grid"`` for integer grid indices (fixed N-d sin-cos encoding) or
            ``"continuous"`` for real-valued positions (random Fourier features).
        size: number of coordinate columns in the group.
        scale: for ``"continuous"``, the length scale of the Fourier features
            (coordinates are divided by it); ignored for ``"grid"``.
    """

    kind: Literal["grid", "continuous"]
    size: int
    scale: float = 1.0


@dataclass(frozen=True)
class TokenSpec:
    """The shape of a modality's tokens, fixed for a data set; encoders are built from it.

    Attributes:
        value_dim: length D of each token's ``values`` vector.
        coords: coordinate groups, in column order; their sizes add up to C.
        kind_vocab: vocabulary size of each ``kinds`` column (empty: no kinds).
        bias_channels: 0 when tokens carry no ``attn_bias``, 1 for an [N, N]
            bias added to every head, R > 1 for an [N, N, R] relation tensor that
            the encoder projects to one bias per head.
        content_kinds: ``kinds`` columns that describe what a token *is* (an atom's
            element) rather than where or which it is (a sensor's type). They are
            part of what is hidden: objectives never show them for hidden tokens.
    """

    value_dim: int
    coords: tuple[CoordGroup, ...]
    kind_vocab: tuple[int, ...] = ()
    bias_channels: int = 0
    content_kinds: tuple[int, ...] = ()

    @property
    def coord_dim(self) -> int:
        return sum(group.size for group in self.coords)


@dataclass
class Tokens:
    """The tokens of one sample.

    Attributes:
        values: (num_tokens, value_dim) float content; the default reconstruction target.
        coords: (num_tokens, coord_dim) float position of each token.
        kinds: (num_tokens, num_kind_columns) long categorical identity, or None.
        attn_bias: (num_tokens, num_tokens) or (num_tokens, num_tokens, channels)
            float pairwise prior added to attention logits, or None.
        targets: extra target streams, each (num_tokens, target_dim), by name.
        label: class index or regression value for probes; never used in pre-training.
        meta: anything else the modality wants to keep (units, spacing, file name).
    """

    values: Tensor
    coords: Tensor
    kinds: Tensor | None = None
    attn_bias: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    label: float | int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.values.shape[0]

    def validate(self, spec: TokenSpec, where: str = "tokens") -> None:
        """Check shapes against ``spec``; raise ValueError naming the field that is wrong."""
        n = self.values.shape[0]
        _check_shapes(spec, (n,), self.values, self.coords, self.kinds, self.attn_bias, self.targets, where)


@dataclass
class TokenBatch:
    """A padded batch of :class:`Tokens`; ``pad`` is True where a token is padding.

    Shapes use B = batch size and N = the longest sample's token count.
    ``values`` (B, N, D), ``coords`` (B, N, C), ``kinds`` (B, N, G) or None,
    ``attn_bias`` (B, N, N[, R]) or None, ``pad`` (B, N) bool, ``targets`` each
    (B, N, T), ``labels`` (B,) float tensor (NaN where a sample has no label),
    ``meta`` one dict per sample.
    """

    values: Tensor
    coords: Tensor
    pad: Tensor
    kinds: Tensor | None = None
    attn_bias: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    labels: Tensor | None = None
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.values.shape[1]

    def target(self, name: str) -> Tensor:
        """The target stream ``name``; ``"values"`` is the token values themselves."""
        return self.values if name == "values" else self.targets[name]

    def validate(self, spec: TokenSpec, where: str = "batch") -> None:
        """Check shapes against ``spec``; raise ValueError naming the field that is wrong."""
        lead = tuple(self.values.shape[:2])
        _check_shapes(spec, lead, self.values, self.coords, self.kinds, self.attn_bias, self.targets, where)
        b, n = lead
        for ok, message in ((tuple(self.pad.shape) == lead and self.pad.dtype == torch.bool,
                             f"pad must be bool {lead}, got {self.pad.dtype} {tuple(self.pad.shape)}"),
                            (len(self.meta) in (0, b), f"meta has {len(self.meta)} entries for {b} samples")):
            if not ok:
                raise ValueError(f"{where}: {message}")

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TokenBatch":
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            values=move(self.values),
            coords=move(self.coords),
            pad=move(self.pad),
            kinds=move(self.kinds),
            attn_bias=move(self.attn_bias),
            targets={k: move(v) for k, v in self.targets.items()},
            labels=move(self.labels),
        )

    def pin_memory(self) -> "TokenBatch":
        """Called by DataLoader(pin_memory=True)."""
        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        return replace(self, values=pin(self.values), coords=pin(self.coords), pad=pin(self.pad),
                       kinds=pin(self.kinds), attn_bias=pin(self.attn_bias),
                       targets={k: pin(v) for k, v in self.targets.items()})


def _check_shapes(spec: TokenSpec, lead: tuple[int, ...], values: Tensor, coords: Tensor, kinds: Tensor | None,
                  attn_bias: Tensor | None, targets: dict[str, Tensor], where: str) -> None:
    """The shape checks of :meth:`Tokens.validate` and :meth:`TokenBatch.validate`; ``lead`` is
    ``(num_tokens,)`` for one sample and ``(batch, num_tokens)`` for a batch."""
    n = lead[-1]
    checks = [
        (values.ndim == len(lead) + 1 and tuple(values.shape) == (*lead, spec.value_dim),
         f"values must be {(*lead, spec.value_dim)}, got {tuple(values.shape)}"),
        (tuple(coords.shape) == (*lead, spec.coord_dim),
         f"coords must be {(*lead, spec.coord_dim)}, got {tuple(coords.shape)}"),
    ]
    if spec.kind_vocab:
        want = (*lead, len(spec.kind_vocab))
        checks.append((kinds is not None and tuple(kinds.shape) == want,
                       f"kinds must be {want}, got {None if kinds is None else tuple(kinds.shape)}"))
    if spec.bias_channels:
        want = (*lead, n) if spec.bias_channels == 1 else (*lead, n, spec.bias_channels)
        checks.append((attn_bias is not None and tuple(attn_bias.shape) == want,
                       f"attn_bias must be {want}, got {None if attn_bias is None else tuple(attn_bias.shape)}"))
    for name, target in targets.items():
        checks.append((tuple(target.shape[:len(lead)]) == lead,
                       f"targets[{name!r}] is {tuple(target.shape)} for {lead} tokens"))
    # dtypes: a float64 tensor passes every shape check and then fails inside the encoder's first
    # layer with torch's own message; say here which field, and what it should be.
    checks += [(values.dtype == torch.float32, f"values must be float32, got {values.dtype}"),
               (coords.dtype == torch.float32, f"coords must be float32, got {coords.dtype}")]
    if kinds is not None and spec.kind_vocab:
        checks.append((not kinds.dtype.is_floating_point and kinds.dtype != torch.bool,
                       f"kinds must be an integer tensor (int64), got {kinds.dtype}"))
    if attn_bias is not None:
        checks.append((attn_bias.dtype.is_floating_point,
                       f"attn_bias must be float32 or float16, got {attn_bias.dtype}"))
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{where}: {message}")
    if kinds is not None and spec.kind_vocab and kinds.numel():
        # Every column within its vocabulary (padding is zeros): past it, F.embedding fails
        # with an index error that names no field.
        flat = kinds.reshape(-1, kinds.shape[-1])
        low, high = flat.amin(0).tolist(), flat.amax(0).tolist()
        for column, (least, most, size) in enumerate(zip(low, high, spec.kind_vocab)):
            if least < 0 or most >= size:
                bad = least if least < 0 else most
                raise ValueError(f"{where}: kinds column {column} holds {bad}, outside its vocabulary "
                                 f"(kind_vocab[{column}] = {size}: values 0..{size - 1}); raise kind_vocab in "
                                 f"spec() or map the value into it")


def labels_tensor(labels: Any) -> Tensor:
    """(B,) float64 labels, NaN where a sample has none (a sequence, or a numpy array)."""
    array = np.asarray(labels)
    if array.dtype.kind in "biuf":
        return torch.from_numpy(array.astype(np.float64))
    return torch.tensor([float("nan") if label is None else float(label) for label in labels], dtype=torch.float64)


def _pad_stack(tensors: Sequence[Tensor], length: int, fill: float = 0.0) -> Tensor:
    """Stack (n_i, ...) tensors into (B, length, ...) with ``fill`` after each n_i."""
    first = tensors[0]
    out = first.new_full((len(tensors), length, *first.shape[1:]), fill)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def _pad_square(tensors: Sequence[Tensor], length: int) -> Tensor:
    """Stack (n_i, n_i[, R]) pairwise tensors into (B, length, length[, R]) with zeros."""
    first = tensors[0]
    out = first.new_zeros((len(tensors), length, length, *first.shape[2:]))
    for i, t in enumerate(tensors):
        n = t.shape[0]
        out[i, :n, :n] = t
    return out


def collate_tokens(samples: Sequence[Tokens]) -> TokenBatch:
    """Pad variable-length samples into one :class:`TokenBatch`.

    Padding rows are zeros and are marked in ``pad``; maskers never make them
    visible and objectives never score them.
    """
    if isinstance(samples, TokenBatch):  # tokenised as a batch already (Modality.tokenize_batch)
        return samples
    if not samples:
        raise ValueError("collate_tokens got an empty list of samples")
    lengths = [len(s) for s in samples]
    n = max(lengths)
    pad = torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]  # [B, N]
    has_kinds = [s.kinds is not None for s in samples]
    has_bias = [s.attn_bias is not None for s in samples]
    if len(set(has_kinds)) > 1 or len(set(has_bias)) > 1:
        raise ValueError("samples in one batch disagree on whether they carry kinds / attn_bias")
    names = set(samples[0].targets)
    if any(set(s.targets) != names for s in samples):
        raise ValueError("samples in one batch carry different target streams")
    labels = labels_tensor([s.label for s in samples])
    return TokenBatch(
        values=_pad_stack([s.values for s in samples], n),
        coords=_pad_stack([s.coords for s in samples], n),
        pad=pad,
        kinds=_pad_stack([s.kinds for s in samples], n) if has_kinds[0] else None,
        attn_bias=_pad_square([s.attn_bias for s in samples], n) if has_bias[0] else None,
        targets={k: _pad_stack([s.targets[k] for s in samples], n) for k in sorted(names)},
        labels=labels,
        meta=[s.meta for s in samples],
    )


def gather_rows(t: Tensor, idx: Tensor) -> Tensor:
    """(B, N, ...) gathered at (B, K) positions -> (B, K, ...)."""
    return torch.gather(t, 1, idx.view(*idx.shape, *([1] * (t.ndim - 2))).expand(-1, -1, *t.shape[2:]))
