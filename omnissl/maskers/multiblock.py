"""Multi-block masking: one large context block and several target blocks (I-JEPA: Assran et al.,
"Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture", CVPR 2023).

I-JEPA draws, on a 2-D patch grid, K target rectangles (scale 0.15-0.2 of the image each, aspect
0.75-1.5) and one context square (scale 0.85-1.0), and removes the targets from the context.
Here a block is defined in coordinate space for any tokens: the ``k = round(scale * n)`` real
tokens nearest a random centre, under a distance that is a box along each grid axis (L-infinity)
and a ball in the continuous coordinates (Euclidean), each axis measured in shares of the
sample's tokens and scaled by the block's aspect. On a full grid that is a box (of any dimension: time,
images, volumes); on atoms or point groups it is a neighbourhood (the k nearest tokens); on
EEG's sensor positions plus time it is a patch of neighbouring sensors over a time interval.
Counting tokens instead of cells hits the scale exactly, and a block near a border extends
inward instead of being clipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Sequence

import torch
from torch import Tensor

from omnissl.errors import RecipeError
from omnissl.maskers.base import Mask, Masker, _select
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch


@dataclass
class MultiBlockMask(Mask):
    """A :class:`Mask` whose visible tokens are the context block and whose hidden tokens are the
    union of the target blocks, with each target block's tokens as well.

    Tokens in neither (outside the context block, outside every target) are neither visible nor
    hidden: drop-mode objectives (MAE, I-JEPA) never see nor score them; dense-mode ones
    (SimMIM) only replace ``hidden`` tokens by the mask token, so they do see them.

    Attributes:
        target_idx: (B, K, T) long positions of each target block's tokens, real ones first.
        target_pad: (B, K, T) bool, True where ``target_idx`` is filler.
    """

    target_idx: Tensor
    target_pad: Tensor

    @property
    def num_targets(self) -> int:
        return self.target_idx.shape[1]

    def to(self, device: torch.device | str) -> "MultiBlockMask":
        return MultiBlockMask(*(t.to(device) for t in (self.hidden, self.visible_idx, self.visible_pad,
                                                       self.hidden_idx, self.hidden_pad, self.target_idx,
                                                       self.target_pad)))


def _scale_range(value: Sequence[float], key: str, upper: float | None) -> tuple[float, float]:
    low, high = (float(v) for v in value) if len(value) == 2 else (None, None)
    if low is None or not 0 < low <= high or (upper is not None and high > upper):
        bound = f"0 < low <= high <= {upper:g}" if upper is not None else "0 < low <= high"
        raise RecipeError(f"masker.{key} must be [low, high] with {bound}, got {list(value)}")
    return low, high


class MultiBlockMasker(Masker):
    """One context block and ``num_targets`` target blocks per sample; the context excludes the targets.

    ``masker(batch, generator)`` returns a :class:`MultiBlockMask`: ``visible`` is the context,
    ``hidden`` the union of the targets (for objectives that want one mask), ``target_idx`` each
    target block (for I-JEPA-style objectives that predict each block).

    Grid axes are told from continuous ones by their values: a coordinate column whose real
    values (across the batch) are all whole numbers is a grid axis (its own box side); the other
    columns together are one continuous axis (a ball around a random token). Along each axis the
    distance to the centre is replaced by the share of the sample's tokens at least as near along
    that axis, so a block covers about ``scale ** (1 / D) * aspect`` of each of its D axes whatever
    their units (cells, metres, sensors), at a border as in the middle. A target's aspect ``r`` is
    the ratio of its first axis's side to each other axis's side (grid axes in column order, then
    the continuous one), drawn log-uniformly from ``target_aspect`` independently per axis (on 2-D
    images: height / width, as I-JEPA); the context block has aspect 1.

    Args:
        num_targets: target blocks per sample (I-JEPA: 4).
        target_scale: [low, high] fraction of a sample's real tokens in each target block (I-JEPA: 0.15-0.2).
        target_aspect: [low, high] aspect ratio of each target block (I-JEPA: 0.75-1.5).
        context_scale: [low, high] fraction of real tokens in the context block before the
            targets are removed from it (I-JEPA: 0.85-1.0).
        axes: coordinate columns that span the blocks (default: all; negative counts from the
            last). Tokens that differ only in other columns are at the same place.
    """

    def __init__(self, num_targets: Annotated[int, Range(ge=1)] = 4,
                 target_scale: Annotated[list[float], Range(gt=0, le=1, ascending=True)] = (0.15, 0.2),
                 target_aspect: Annotated[list[float], Range(gt=0, ascending=True)] = (0.75, 1.5),
                 context_scale: Annotated[list[float], Range(gt=0, le=1, ascending=True)] = (0.85, 1.0),
                 axes: Sequence[int] | None = None):  # column indices (negative: from the end): no Range
        if num_targets < 1:
            raise RecipeError(f"masker.num_targets must be >= 1, got {num_targets}")
        self.num_targets = int(num_targets)
        self.target_scale = _scale_range(target_scale, "target_scale", 1.0)
        self.target_aspect = _scale_range(target_aspect, "target_aspect", None)
        self.context_scale = _scale_range(context_scale, "context_scale", 1.0)
        if axes is not None and not list(axes):
            raise RecipeError("masker.axes is empty: name at least one coordinate column, or leave it out for all")
        self.axes = list(axes) if axes is not None else None

    def __call__(self, batch: TokenBatch, generator: torch.Generator | None = None) -> MultiBlockMask:
        context, targets = self.blocks(batch, generator)  # [B, N], [B, K, N]
        hidden = targets.any(dim=1)
        visible_idx, visible_pad = _select(context & ~hidden)
        hidden_idx, hidden_pad = _select(hidden)
        b, k, n = targets.shape
        target_idx, target_pad = _select(targets.reshape(b * k, n))
        return MultiBlockMask(hidden, visible_idx, visible_pad, hidden_idx, hidden_pad,
                              target_idx.reshape(b, k, -1), target_pad.reshape(b, k, -1))

    def hidden(self, batch: TokenBatch, generator: torch.Generator | None) -> Tensor:
        return self.blocks(batch, generator)[1].any(dim=1)

    def blocks(self, batch: TokenBatch, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(B, N) context block with the targets removed, and (B, K, N) target blocks; never padding.

        A sample with one real token has it in its context and no target; otherwise every target
        has at least one token and the context keeps at least one token outside the targets.
        """
        pad = batch.pad
        coords = self._columns(batch.coords).float()  # [B, N, A]
        b, n = pad.shape
        k = self.num_targets
        device = pad.device

        def uniform(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=device)

        # Every draw is made up front, in one order: the masks are a function of the generator.
        target_s = self._between(self.target_scale, uniform(b, k))  # [B, K]
        context_s = self._between(self.context_scale, uniform(b, 1))  # [B, 1]
        scale = torch.cat([context_s, target_s], dim=1)  # [B, 1+K]: block 0 is the context
        grid = ((coords == coords.round()) | pad[..., None]).all(dim=1).all(dim=0)  # [A]: whole-number columns
        num_axes = int(grid.sum()) + int(not bool(grid.all()))
        ratios = torch.exp(self._between(tuple(torch.log(torch.tensor(self.target_aspect)).tolist()),
                                         uniform(b, k, max(num_axes - 1, 0))))  # [B, K, D-1]
        placement = uniform(b, 1 + k, coords.shape[-1])  # [B, 1+K, A]
        anchor = uniform(b, 1 + k, n)  # [B, 1+K, N]: the continuous centre's token
        ties = uniform(b, 1 + k, n)  # [B, 1+K, N]: last tie-breaker

        aspect = torch.ones(b, 1 + k, num_axes, device=device)  # [B, 1+K, D]: the context is square
        if num_axes > 1:  # side_0 / side_j = r_j, product of the sides' factors = 1
            log_r = ratios.log()
            first = log_r.sum(-1, keepdim=True) / num_axes
            aspect[:, 1:] = torch.cat([first, first - log_r], dim=-1).exp()
        axis_of = torch.cumsum(grid.long(), 0) - 1  # grid column -> its axis; the continuous axis is last

        count = (~pad).sum(dim=1)  # [B]
        big = torch.finfo(coords.dtype).max
        low = coords.masked_fill(pad[..., None], big).amin(dim=1)  # [B, A]
        high = coords.masked_fill(pad[..., None], -big).amax(dim=1)  # [B, A]
        distance = []  # [B, 1+K, N] distance to the block's centre along each axis
        if bool(grid.any()):
            g = grid.nonzero().squeeze(1)
            cells = (high - low + 1)[:, g]  # [B, G] extent in cells
            share = scale[..., None] ** (1.0 / num_axes) * aspect[..., axis_of[g]]  # [B, 1+K, G]
            side = (share * cells[:, None]).clamp(max=cells[:, None])  # the box's expected side in cells
            # A centre that keeps that box inside the sample, uniform over such centres (as I-JEPA's corners).
            start = low[:, None, g] - 0.5 + side / 2
            centre = start + placement[..., g] * (cells[:, None] - side)  # [B, 1+K, G]
            distance += list((coords[:, None, :, g] - centre[:, :, None]).abs().unbind(-1))
        if not bool(grid.all()):
            c = (~grid).nonzero().squeeze(1)
            pts = coords[..., c]  # [B, N, Cc]
            chosen = anchor.masked_fill(pad[:, None], -1.0).argmax(dim=-1)  # [B, 1+K] a random real token
            centre = torch.gather(pts, 1, chosen[..., None].expand(-1, -1, pts.shape[-1]))  # [B, 1+K, Cc]
            distance.append(torch.cdist(centre, pts))  # [B, 1+K, N] a ball
        # Each axis's distance becomes the share of the sample's tokens at least as near along that
        # axis (grid cells, sensors, atoms alike), divided by the block's aspect on that axis: every
        # axis then covers about scale ** (1 / D) * aspect of itself, at a border as in the middle.
        shares = []
        for j, d in enumerate(distance):
            d = d.masked_fill(pad[:, None], float("inf"))
            near = torch.searchsorted(d.sort(dim=-1).values, d, right=True)  # [B, 1+K, N]
            shares.append(near / count[:, None, None].clamp(min=1) / aspect[..., j:j + 1])
        scaled = torch.stack(shares, dim=-1)  # [B, 1+K, N, D]
        box = scaled.amax(dim=-1).masked_fill(pad[:, None], float("inf"))  # L-infinity over axes
        round_ = scaled.norm(dim=-1).masked_fill(pad[:, None], float("inf"))  # fills a box's last face from its middle

        # Tokens in order of (box distance, round distance, random): three stable sorts, last key first.
        order = ties.argsort(dim=-1)
        for key in (round_, box):
            order = order.gather(-1, key.gather(-1, order).argsort(dim=-1, stable=True))
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(n, device=device).expand_as(order))

        wanted = torch.round(scale * count[:, None].float()).long()  # [B, 1+K]
        most = torch.cat([count[:, None], (count[:, None] - 1).clamp(min=0).expand(-1, k)], dim=1)
        wanted = torch.minimum(wanted.clamp(min=1), most)  # targets leave one token for the context
        chosen_blocks = rank < wanted[..., None]  # [B, 1+K, N]
        context, targets = chosen_blocks[:, 0], chosen_blocks[:, 1:].clone()
        # A context swallowed whole by the targets keeps its nearest token (I-JEPA retries instead);
        # a one-token target that loses it takes its own next-nearest token.
        lost = ~(context & ~targets.any(dim=1)).any(dim=1) & (count >= 2)
        if bool(lost.any()):
            rows = lost.nonzero().squeeze(1)
            targets[rows, :, order[rows, 0, 0]] = False
            emptied = (~targets.any(dim=-1) & lost[:, None]).nonzero()  # [E, 2] (sample, target)
            targets[emptied[:, 0], emptied[:, 1], order[emptied[:, 0], 1 + emptied[:, 1], 1]] = True
        return context & ~targets.any(dim=1), targets

    def _columns(self, coords: Tensor) -> Tensor:
        if self.axes is None:
            return coords
        width = coords.shape[-1]
        bad = [a for a in self.axes if not -width <= a < width]
        if bad:
            raise RecipeError(f"masker.axes={self.axes} but tokens have {width} coordinate columns")
        return coords[..., self.axes]

    @staticmethod
    def _between(bounds: tuple[float, float], u: Tensor) -> Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u
