"""iBOT (Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022):
self-distillation between an EMA teacher and the student over several views (DINO: Caron et al.,
"Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021), plus masked-token
distillation (MIM) on the global views.

Views live in token space, so no modality code is needed: each sample gives 2 *global* views
(coordinate blocks holding ``global_scale`` of its real tokens) and ``local_views`` small ones
(``local_scale``), drawn as the ``multiblock`` masker's blocks (boxes on grids, neighbourhoods
of atoms or points); a view is a gather of token positions, so each token keeps its coordinates
and a view never holds padding. Teacher and student share a projection-head architecture
(:class:`ProjectionHead`: an MLP, an L2-normalised bottleneck, ``out_dim`` weight-normalised
prototypes); the teacher's encoder and heads are EMA copies (:class:`EMATeacher`). With
``head_norm: batch`` the heads' hidden layers are standardised over the batch (DINO's
``use_bn_in_head``), which small encoders on few tokens need to keep the centred teacher from
going uniform (docs/objectives.md).

* **DINO loss** (the pooled view embedding, here the mean of its tokens: the encoder has no
  [CLS]): cross-entropy between the teacher's centred and sharpened softmax of each global view
  (temperature ``teacher_temp``) and the student's softmax (``student_temp``) of every other view.
* **MIM loss**: the student sees each global view with the masker's hidden tokens replaced by
  the mask token (dense mode); at the hidden positions its patch distributions match the
  teacher's of the unmasked view (centred and sharpened the same way), averaged over each
  view's hidden tokens, then over the views that have any.
* **centres**: running means of the teacher's outputs (``center_momentum``), buffers of the
  objective, so they are in every checkpoint and ``--resume`` is exact.

**The patch heads see the hidden tokens only**, student and teacher, and the patch centre is the
mean of the teacher's outputs at those tokens, as DINOv2 does (Oquab et al., "DINOv2: Learning
Robust Visual Features without Supervision", TMLR 2024: its teacher gathers the masked patch
tokens before its iBOT head, and its patch centre is updated from them). iBOT's released code
projects every patch token of the teacher's global views and centres over all of them, but only
the hidden ones are ever targets: with ``head_norm: none`` the loss at a given centre is the
same, and what changes is the centre's population (the teacher's outputs at hidden positions,
the distribution the targets are drawn from, rather than at all positions of the view). With
``head_norm: batch`` the patch heads' batch statistics are now over the hidden tokens for both
networks (the student's already were). The teacher's patch head was the largest cost of the step
(an MLP to ``out_dim`` prototypes on 2·G tokens per sample, more than the teacher's encoder for
a ViT-Tiny; BENCHMARKS.md, ``objective_step.py``). The hidden tokens of all views are packed
into one set of rows (no per-view filler), and where one head without batch statistics serves
both levels (``shared_head``, ``head_norm: none``) pooled and patch rows go through it in one
call.
Checkpoints keep the same state; a run resumed from one written before this change starts from
a patch centre averaged over all tokens, which the running mean replaces within a few tens of
steps (``center_momentum`` 0.9).

``make_mask`` draws the views and the MIM mask of the global views. With ``masker: attention``
(AttMask, Kakogeorgiou et al., ECCV 2022) it first runs the teacher on the global views to get
its last block's attention and hides the most attended tokens; the teacher's features of that
pass travel with the mask, so the teacher still encodes the global views once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Sequence, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnissl.encoders.transformer import TokenEncoder, gather_tokens
from omnissl.errors import RecipeError
from omnissl.layers import init_weights
from omnissl.maskers.base import Mask, _select
from omnissl.maskers.multiblock import MultiBlockMasker
from omnissl.modality import Modality
from omnissl.objectives.base import Objective, ObjectiveOutput
from omnissl.objectives.ema import EMATeacher
from omnissl.recipe import Range
from omnissl.tokens import TokenBatch

GLOBAL_VIEWS = 2
HeadNorm = Literal["none", "batch"]
HEAD_NORMS = get_args(HeadNorm)


class BatchStandardize(nn.Module):
    """Batch normalisation that always uses the statistics of the batch it sees, over its real
    rows only (filler tokens neither count nor change), with a learnt scale and shift.

    DINO's ``use_bn_in_head`` (Caron et al. 2021; the default of solo-learn's DINO for small data
    sets): DINO's teacher runs in train mode, so its head's BatchNorm uses batch statistics too;
    here there are no running statistics to copy into the EMA teacher or to save.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, real: Tensor | None = None) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] == 0:  # no rows (a batch without hidden tokens): no statistics to take
            return x * self.weight + self.bias
        chosen = rows if real is None else rows[real.reshape(-1)]
        if chosen.shape[0] == 0:
            chosen = rows
        mean = chosen.mean(0)
        var = chosen.var(0, unbiased=False)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class ProjectionHead(nn.Module):
    """DINO's projection head: an MLP, an L2-normalised bottleneck, and weight-normalised
    prototypes (each prototype a unit vector: DINO's weight norm with its gain fixed to 1).

    Args:
        in_dim: width of the features it projects.
        out_dim: number of prototypes (DINO 65536, iBOT 8192).
        hidden_dim: the MLP's width (DINO 2048).
        bottleneck_dim: the bottleneck's width (DINO 256).
        layers: linear layers of the MLP, the bottleneck's included (DINO 3).
        norm: ``none`` (DINO's ViT head) or ``batch``: each hidden layer's outputs standardised
            over the batch (:class:`BatchStandardize`, DINO's ``use_bn_in_head``).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, layers: int = 3,
                 norm: HeadNorm = "none"):
        super().__init__()
        if layers < 1:
            raise RecipeError(f"objective.head_layers must be >= 1, got {layers}")
        if norm not in HEAD_NORMS:
            raise RecipeError(f"objective.head_norm must be one of {', '.join(HEAD_NORMS)}, got {norm!r}")
        mods: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            mods.append(nn.Linear(width, hidden_dim))
            if norm == "batch":
                mods.append(BatchStandardize(hidden_dim))
            mods.append(nn.GELU())
            width = hidden_dim
        mods.append(nn.Linear(width, bottleneck_dim))
        self.norm = norm
        self.mlp = nn.Sequential(*mods)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        self.mlp.apply(init_weights)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: Tensor, real: Tensor | None = None) -> Tensor:
        """(..., in_dim) features -> (..., out_dim) cosines with the prototypes; ``real`` (x's
        leading shape, True where a real token) limits batch statistics to real rows."""
        for layer in self.mlp:
            x = layer(x, real) if isinstance(layer, BatchStandardize) else layer(x)
        z = F.normalize(x, dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=-1))

    def project(self, parts: Sequence[Tensor]) -> list[Tensor]:
        """Each (rows, in_dim) part projected as by :meth:`forward` on its own. Without batch
        statistics the rows are independent, so the parts go through in one call (larger
        matrix products); with ``norm: batch`` each part keeps its own statistics."""
        if self.norm == "batch" or len(parts) == 1:
            return [self(part) for part in parts]
        return list(self(torch.cat(list(parts))).split([part.shape[0] for part in parts]))


@dataclass
class IBOTViews:
    """What ``IBOT.make_mask`` draws for a batch of B samples.

    Attributes:
        global_idx, global_pad: (2B, G) token positions of the global views (row ``b * 2 + j``
            is view j of sample b) and True where filler.
        local_idx, local_pad: (LB, S) the same for the local views (row ``b * L + j``), or None.
        mask: the MIM mask over the global views (2B rows of G tokens).
        teacher_features: (2B, G, dim) the teacher's features of the global views where
            ``make_mask`` already ran the teacher (attention-guided masking), else None.
    """

    global_idx: Tensor
    global_pad: Tensor
    local_idx: Tensor | None
    local_pad: Tensor | None
    mask: Mask
    teacher_features: Tensor | None = None

    def to(self, device: torch.device | str) -> "IBOTViews":
        move = (lambda t: None if t is None else t.to(device))
        return IBOTViews(move(self.global_idx), move(self.global_pad), move(self.local_idx), move(self.local_pad),
                         self.mask.to(device), move(self.teacher_features))


def select_views(batch: TokenBatch, idx: Tensor, pad: Tensor) -> TokenBatch:
    """The tokens at ``idx`` (V*B rows: ``V`` views of each sample in a row) as a batch of views."""
    values, coords, kinds, bias = gather_tokens(batch, idx)  # rows b * V + j point into sample b: no repeat
    return TokenBatch(values=values, coords=coords, pad=pad, kinds=kinds, attn_bias=bias)


def _scales(value: Sequence[float], key: str) -> tuple[float, float]:
    low, high = (float(v) for v in value) if len(value) == 2 else (float("nan"), float("nan"))
    if not 0.0 < low <= high <= 1.0:
        raise RecipeError(f"objective.{key} must be [low, high] with 0 < low <= high <= 1, got {list(value)}")
    return low, high


class IBOT(Objective):
    """iBOT (DINO's self-distillation plus masked-token distillation) over token-space views.

    Args:
        encoder: the encoder being pre-trained (the student; the teacher is its EMA copy).
        modality: unused (the targets are the teacher's); part of every objective's signature.
        out_dim: prototypes of the pooled head (iBOT 8192).
        patch_out_dim: prototypes of the patch head (default ``out_dim``; a separate head only).
        shared_head: one head for pooled and patch tokens (iBOT's ``shared_head``), else two.
        hidden_dim, bottleneck_dim, head_layers: the heads' MLP (DINO: 2048, 256, 3).
        head_norm: ``none`` (DINO's and iBOT's ViT heads) or ``batch``: the heads' hidden layers
            standardised over the batch (DINO's ``use_bn_in_head``). Small encoders on small
            samples need it: their pooled features are nearly the same for every sample, and
            without it the centred teacher is uniform (docs/objectives.md, iBOT).
        local_views: small views per sample (DINO/iBOT: 10 for ViT-S, 8 or 10 for ViT-B).
        global_scale: [low, high] share of a sample's real tokens in each global view (DINO 0.4-1,
            iBOT 0.32-1 or 0.25-1).
        local_scale: [low, high] share in each local view (DINO 0.05-0.4).
        teacher_temp: the teacher's softmax temperature (DINO 0.04-0.07).
        warmup_teacher_temp: the teacher's temperature at the first step (DINO 0.04).
        teacher_temp_warmup: fraction of the run over which the temperature rises linearly from
            ``warmup_teacher_temp`` to ``teacher_temp`` (DINO: 30 of 100-800 epochs); 0: none.
        student_temp: the student's temperature (0.1).
        center_momentum: momentum of the centres' running means (0.9).
        momentum: the teacher's momentum at the first step, rising to 1 (DINO/iBOT 0.996).
        lambda_mim: weight of the MIM loss (iBOT 1).
        view_axes: coordinate columns the views are blocks of (default all, as ``multiblock``'s
            ``axes``): ``[0]`` on audio's (time, frequency) tokens makes every view a time segment
            over all frequencies, as the crops of ATST and BYOL-A.
    """

    def __init__(self, encoder: nn.Module, modality: Modality | None = None,
                 out_dim: Annotated[int, Range(ge=1)] = 8192,
                 patch_out_dim: Annotated[int | None, Range(ge=1)] = None, shared_head: bool = True,
                 hidden_dim: Annotated[int, Range(ge=1)] = 2048, bottleneck_dim: Annotated[int, Range(ge=1)] = 256,
                 head_layers: Annotated[int, Range(ge=1)] = 3, head_norm: HeadNorm = "none",
                 local_views: Annotated[int, Range(ge=0)] = 6,
                 global_scale: Annotated[list[float], Range(gt=0, le=1, ascending=True)] = (0.4, 1.0),
                 local_scale: Annotated[list[float], Range(gt=0, le=1, ascending=True)] = (0.05, 0.4),
                 teacher_temp: Annotated[float, Range(gt=0)] = 0.04,
                 warmup_teacher_temp: Annotated[float, Range(gt=0)] = 0.04,
                 teacher_temp_warmup: Annotated[float, Range(ge=0, le=1)] = 0.0,
                 student_temp: Annotated[float, Range(gt=0)] = 0.1,
                 center_momentum: Annotated[float, Range(ge=0, le=1)] = 0.9,
                 momentum: Annotated[float, Range(ge=0, le=1)] = 0.996,
                 lambda_mim: Annotated[float, Range(ge=0)] = 1.0,
                 view_axes: Sequence[int] | None = None):  # column indices (negative: from the end): no Range
        super().__init__(encoder)
        if shared_head and patch_out_dim not in (None, out_dim):
            raise RecipeError(f"objective.patch_out_dim={patch_out_dim} differs from out_dim={out_dim}, but "
                              f"shared_head is true: set shared_head: false for a separate patch head")
        for key, value in (("teacher_temp", teacher_temp), ("warmup_teacher_temp", warmup_teacher_temp),
                           ("student_temp", student_temp)):
            if value <= 0:
                raise RecipeError(f"objective.{key} must be > 0, got {value}")
        if not 0.0 <= center_momentum <= 1.0 or not 0.0 <= teacher_temp_warmup <= 1.0:
            raise RecipeError("objective.center_momentum and objective.teacher_temp_warmup must be in [0, 1], got "
                              f"{center_momentum} and {teacher_temp_warmup}")
        if local_views < 0:
            raise RecipeError(f"objective.local_views must be >= 0, got {local_views}")
        self.local_views = int(local_views)
        self.global_scale = _scales(global_scale, "global_scale")
        self.local_scale = _scales(local_scale, "local_scale")
        self.teacher_temp, self.warmup_teacher_temp = float(teacher_temp), float(warmup_teacher_temp)
        self.teacher_temp_warmup, self.student_temp = float(teacher_temp_warmup), float(student_temp)
        self.center_momentum, self.lambda_mim = float(center_momentum), float(lambda_mim)
        self.shared_head = bool(shared_head)
        patch_out = out_dim if patch_out_dim is None else int(patch_out_dim)
        heads = {"pooled": ProjectionHead(encoder.dim, out_dim, hidden_dim, bottleneck_dim, head_layers, head_norm)}
        if not self.shared_head:
            heads["patch"] = ProjectionHead(encoder.dim, patch_out, hidden_dim, bottleneck_dim, head_layers, head_norm)
        self.heads = nn.ModuleDict(heads)
        self.teacher = EMATeacher(encoder, momentum)
        self.teacher_heads = EMATeacher(self.heads, momentum)
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("patch_center", torch.zeros(patch_out))
        # The step's teacher sums (pooled, patch, pooled rows, patch rows), added up over its
        # micro-batches and applied once in after_step; empty between steps, so not saved.
        self.register_buffer("center_sums", torch.zeros(out_dim + patch_out + 2), persistent=False)
        # Where the run is, for the temperature warm-up (set by after_step; saved, so resume is exact).
        self.register_buffer("progress", torch.zeros(2, dtype=torch.long))  # [steps done, total steps]
        aspect = (3 / 4, 4 / 3)  # as the random resized crops of DINO
        axes = None if view_axes is None else [int(a) for a in view_axes]
        if axes is not None and not axes:
            raise RecipeError("objective.view_axes is empty: name at least one coordinate column, or leave it out "
                              "for all")
        self.global_blocks = MultiBlockMasker(GLOBAL_VIEWS, self.global_scale, aspect, (1.0, 1.0), axes)
        self.local_blocks = MultiBlockMasker(max(self.local_views, 1), self.local_scale, aspect, (1.0, 1.0), axes)

    # -- views and masks -------------------------------------------------------------------------

    def draw_views(self, batch: TokenBatch, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        """(2B, G) global and (LB, S) local view positions and filler flags (coordinate blocks
        of real tokens; a one-token sample's views are that token)."""
        pad = batch.pad
        b, n = pad.shape

        def views(blocks: MultiBlockMasker, count: int) -> tuple[Tensor, Tensor]:
            chosen = blocks.blocks(batch, generator)[1][:, :count]  # [B, V, N], never padding
            chosen = torch.where(chosen.any(-1, keepdim=True), chosen, (~pad)[:, None])
            return _select(chosen.reshape(b * count, n))

        global_idx, global_pad = views(self.global_blocks, GLOBAL_VIEWS)
        local_idx = local_pad = None
        if self.local_views:
            local_idx, local_pad = views(self.local_blocks, self.local_views)
        return global_idx, global_pad, local_idx, local_pad

    def make_mask(self, batch: TokenBatch, masker: Callable[..., Any], generator: torch.Generator | None) -> IBOTViews:
        """The views, and the MIM mask of the global views drawn by ``masker``; an attention
        masker (``hide_by_scores``) gets the teacher's last-block attention on each global view."""
        global_idx, global_pad, local_idx, local_pad = self.draw_views(batch, generator)
        views = select_views(batch, global_idx, global_pad)
        features = None
        if hasattr(masker, "hide_by_scores"):
            with torch.no_grad():
                features, scores = self.teacher.module.attention_scores(views.values, views.coords, views.kinds,
                                                                        views.pad, views.attn_bias)
            mask = masker.hide_by_scores(views, scores, generator)
        else:
            mask = masker(views, generator)
        return IBOTViews(global_idx, global_pad, local_idx, local_pad, mask, features)

    # -- loss ------------------------------------------------------------------------------------

    def temperature(self) -> float:
        """The teacher's temperature now: linear warm-up over ``teacher_temp_warmup`` of the run."""
        done, total = (int(v) for v in self.progress)
        span = self.teacher_temp_warmup * total
        if self.teacher_temp_warmup == 0 or (total and done >= span):
            return self.teacher_temp
        share = done / span if span > 0 else 0.0
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * share

    def forward(self, batch: TokenBatch, views: IBOTViews) -> ObjectiveOutput:
        b = batch.batch_size
        if views.global_idx.shape[0] != GLOBAL_VIEWS * b:
            raise ValueError(f"ibot needs the views of its make_mask ({GLOBAL_VIEWS * b} global rows for "
                             f"{b} samples), got {views.global_idx.shape[0]} rows")
        mask = views.mask
        glob = select_views(batch, views.global_idx, views.global_pad)
        # The MIM loss's tokens, packed: H rows over all views (a mask never hides filler; the & is
        # a guard). Only these go through the patch heads (DINOv2's choice, module docstring).
        hidden = mask.hidden & ~glob.pad  # [2B, G]
        where = hidden.reshape(-1).nonzero().squeeze(1)  # [H] positions in the flattened views
        count = hidden.sum(1)  # [2B] hidden tokens per view
        separate = not self.shared_head
        # The teacher first: its temporaries are freed before the student's activations (kept for
        # the backward pass) are allocated, so they reuse memory instead of faulting in fresh pages
        # (a CPU step at ViT-Tiny, batch 32 faulted a third to two thirds as often; BENCHMARKS.md).
        with torch.no_grad():
            teacher = views.teacher_features
            if teacher is None:
                teacher = self.teacher(glob.values, glob.coords, glob.kinds, glob.pad, glob.attn_bias)
            heads = self.teacher_heads.module
            t_rows = [TokenEncoder.pool(teacher, glob.pad), teacher.flatten(0, 1).index_select(0, where)]
            t_pooled, t_patch = self.project(heads, t_rows, separate)  # [2B, K], [H, Kp]
            t_pooled, t_patch = t_pooled.float(), t_patch.float()
            temp = self.temperature()
            t_probs = F.softmax((t_pooled - self.center) / temp, dim=-1).view(b, GLOBAL_VIEWS, -1)
            target = F.softmax((t_patch - self.patch_center) / temp, dim=-1)  # [H, Kp]

        student = self.encoder(glob.values, glob.coords, glob.kinds, glob.pad, glob.attn_bias,
                               hidden=mask.hidden)  # [2B, G, dim], hidden tokens as the mask token
        pooled = [TokenEncoder.pool(student, glob.pad)]
        if views.local_idx is not None:
            local = select_views(batch, views.local_idx, views.local_pad)
            feats = self.encoder(local.values, local.coords, local.kinds, local.pad, local.attn_bias)
            pooled.append(TokenEncoder.pool(feats, local.pad))
        s_rows = [torch.cat(pooled), student.flatten(0, 1).index_select(0, where)]
        s_pooled, s_patch = self.project(self.heads, s_rows, separate)

        # DINO: each global teacher view against every other student view.
        s_pooled = F.log_softmax(s_pooled.float() / self.student_temp, dim=-1)
        s_global = s_pooled[:GLOBAL_VIEWS * b].view(b, GLOBAL_VIEWS, -1)
        s_local = [s_pooled[GLOBAL_VIEWS * b:].view(b, self.local_views, -1)[:, j] for j in range(self.local_views)]
        terms = []
        for i in range(GLOBAL_VIEWS):
            others = [s_global[:, j] for j in range(GLOBAL_VIEWS) if j != i] + s_local
            terms += [-(t_probs[:, i] * s).sum(-1).mean() for s in others]
        loss_dino = torch.stack(terms).mean()
        entropy = -(t_probs * t_probs.clamp(min=1e-30).log()).sum(-1).mean()  # each teacher view in as many terms

        # MIM: at each global view's hidden tokens, the student's patch distribution vs the teacher's.
        per_token = -(target * F.log_softmax(s_patch.float() / self.student_temp, dim=-1)).sum(-1)  # [H]
        weight = (1.0 / count.clamp(min=1).float()).index_select(0, where // hidden.shape[1])  # [H]
        masked_views = (count > 0).sum().clamp(min=1)

        def per_view_mean(values: Tensor) -> Tensor:  # mean over each view's hidden tokens, then over views
            return (values * weight).sum() / masked_views  # 0 (with gradients) when nothing is hidden

        loss_mim = per_view_mean(per_token)
        patch_entropy = per_view_mean(-(target * target.clamp(min=1e-30).log()).sum(-1))

        if self.training:
            self.add_center_sums(t_pooled, t_patch)
        loss = loss_dino + self.lambda_mim * loss_mim
        # The cross-entropies' floors are the teacher's entropies; what is left is the KL divergence
        # the student can still close (DINO monitors both, Caron et al. 2021, Sec. 5.3).
        return ObjectiveOutput(loss, {"loss": loss.detach(), "loss_dino": loss_dino.detach(),
                                      "loss_mim": loss_mim.detach(), "kl_dino": (loss_dino - entropy).detach(),
                                      "kl_mim": (loss_mim - patch_entropy).detach(),
                                      "teacher_entropy": entropy.detach()})

    def project(self, heads: nn.ModuleDict, rows: list[Tensor], separate: bool) -> list[Tensor]:
        """(pooled rows, patch rows) through the pooled and patch heads: two heads, or one head
        for both (one call where it has no batch statistics)."""
        if separate:
            return [heads["pooled"](rows[0]), heads["patch"](rows[1])]
        return heads["pooled"].project(rows)

    @torch.no_grad()
    def add_center_sums(self, t_pooled: Tensor, t_patch: Tensor) -> None:
        """Add a micro-batch's teacher outputs to the step's sums for the centres
        (:meth:`update_centers` applies them once per optimiser step)."""
        d = self.center.shape[0]
        self.center_sums[:d] += t_pooled.float().sum(dim=0)
        self.center_sums[d:-2] += t_patch.float().sum(dim=0)
        self.center_sums[-2] += t_pooled.shape[0]
        self.center_sums[-1] += t_patch.shape[0]

    @torch.no_grad()
    def update_centers(self) -> None:
        """Running means of the teacher's outputs (DINO's centring), once per optimiser step, over
        the step's global batch: its global views and, for patches, its hidden tokens (DINOv2's
        choice). Under torch.distributed the sums of every process are added with one all-reduce,
        as DINO's, so the centres stay equal on all ranks and follow the same global batch whatever
        the number of processes and micro-batches. A step without hidden tokens leaves the patch
        centre as it is."""
        sums = self.center_sums  # no count, no change (and no read on the host: no synchronisation on CUDA)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        m = self.center_momentum
        d = self.center.shape[0]
        pooled_mean = sums[:d] / sums[-2].clamp(min=1)
        patch_mean = sums[d:-2] / sums[-1].clamp(min=1)
        pooled_m = torch.where(sums[-2] > 0, m, 1.0)
        self.center.mul_(pooled_m).add_(pooled_mean * (1.0 - pooled_m))
        patch_m = torch.where(sums[-1] > 0, m, 1.0)  # no hidden token anywhere: keep the centre
        self.patch_center.mul_(patch_m).add_(patch_mean * (1.0 - patch_m))
        sums.zero_()

    def after_step(self, step: int, total_steps: int) -> None:
        """The centres take the step's teacher outputs; the teacher (encoder and heads) follows the
        student; the warm-up's clock advances."""
        self.update_centers()
        self.teacher.update(self.encoder, step, total_steps)
        self.teacher_heads.update(self.heads, step, total_steps)
        self.progress.copy_(torch.tensor([step + 1, total_steps]))
