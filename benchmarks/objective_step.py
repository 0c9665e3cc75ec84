"""Latent-objective training-step time: omnissl's I-JEPA and iBOT against lightly's, one process.

Both objectives on both sides use the same ViT-Tiny/16 encoder (192-d, 12 blocks, 3 heads,
timm ``Block``s) at 224 px, batch 32, and the same masks, drawn once per step index before
timing and fed to both sides. Each step covers forward, backward, the AdamW step and the EMA
teacher update; it starts from images (omnissl patchifies them inside the step, as a peer that
has no token loader would). Sides alternate within every round, so drifting machine load hits
both alike; medians after warm-up are reported.

* **I-JEPA.** lightly: ``MaskedVisionTransformerTIMM`` (timm ViT-Tiny/16, no class token, fixed
  sin-cos positions) as the context and EMA target encoders, ``IJEPAPredictorTIMM`` as the
  predictor, ``utils.apply_masks``/``repeat_interleave_batch`` for the targets, as lightly's
  I-JEPA example. omnissl: ``objective: ijepa`` (``omnissl.objectives.IJEPA``). Masks: omnissl's
  ``multiblock`` masker with I-JEPA's scales (4 targets of 0.15-0.2, context 0.85-1.0), each set
  cut to the batch's smallest size, as I-JEPA's collator does (lightly's predictor needs equal
  lengths), so both sides see exactly the same context and target tokens. Predictor: ``--pred-dim``
  wide (default 96: half the encoder's width, as I-JEPA's 384 for ViT-B), ``--pred-depth`` blocks
  (6, I-JEPA's for ViT-B/L), 3 heads; smooth-L1 loss (I-JEPA's released code).
* **iBOT.** lightly: ``MaskedVisionTransformerTIMM`` student and EMA teacher (timm ViT-Tiny/16,
  class token), one shared ``DINOProjectionHead`` (8192 prototypes, 2048 hidden, 256 bottleneck)
  per side, ``DINOLoss`` and ``IBOTPatchLoss``, as lightly's iBOT example (lightly 1.6 has no
  separate iBOT head class: its example uses ``DINOProjectionHead`` for both). omnissl:
  ``objective: ibot`` (``omnissl.objectives.IBOT``, shared head, 8192 prototypes). Views: 2
  global views of 196 tokens (224 px) and ``--local-views`` local views of 36 tokens (lightly:
  96 px crops; omnissl: 6x6-token boxes at random places), so both encoders see the same number
  of tokens (lightly adds its class token to each view). The MIM mask of the global views is
  lightly's ``random_block_mask`` (DINOv2's: half the views masked, 10-50 % of their tokens),
  the same boolean mask on both sides. Both sides run the patch head, student's and teacher's,
  on the hidden tokens only and centre the patch targets over them (DINOv2's choice; lightly's
  example and omnissl's ``ibot``), so they do the same work (``--flops``).

    OMP_NUM_THREADS=1 python benchmarks/objective_step.py                 # CPU, and CUDA when present
    python benchmarks/objective_step.py --objectives ibot --steps 3 --warmup 1
    python benchmarks/objective_step.py --objectives ijepa --steps 6 --warmup 2
    python benchmarks/objective_step.py --quick                           # tiny smoke test, seconds
    python benchmarks/objective_step.py --batch 4 --steps 1 --warmup 0 --flops   # work per step, each side

Each side also reports its median minor page faults and system time per step: memory a step
touches for the first time (fresh pages from the kernel) costs time outside the operators.

The last line is the worst (largest) omnissl/lightly step-time ratio over the objectives and
devices run (lower is better for omnissl).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import random
import resource
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCH, DIM, DEPTH, HEADS = 16, 192, 12, 3
LR, BETAS, WD = 1.5e-4, (0.9, 0.95), 0.05
OUT_DIM = 8192


@dataclass
class Settings:
    img: int
    batch: int
    local_views: int
    local_img: int
    pred_dim: int
    pred_depth: int
    pred_heads: int
    out_dim: int
    steps: int
    warmup: int

    @property
    def grid(self) -> int:
        return self.img // PATCH

    @property
    def local_grid(self) -> int:
        return self.local_img // PATCH


Step = Callable[[int], float]


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# -- omnissl's tokens ------------------------------------------------------------------------------


def omnissl_pixels(s: Settings, device: torch.device):
    """The image modality of the benchmark: RGB 16x16 patches on a 2-D grid."""
    from omnissl import CoordGroup, Modality, TokenBatch, TokenSpec
    from omnissl.tokenizers import GridPatchifier

    patchifier = GridPatchifier(PATCH, 3, ndim=2)
    spec = TokenSpec(patchifier.value_dim, (CoordGroup("grid", 2),))

    class Pixels(Modality):
        def spec(self) -> TokenSpec:
            return spec

    coords = patchifier.grid_coords((s.grid, s.grid)).to(device)

    def tokens(images: Tensor) -> TokenBatch:
        b = images.shape[0]
        values = patchifier.patchify(images)  # [B, N, 768]
        return TokenBatch(values=values, coords=coords.expand(b, -1, -1).contiguous(),
                          pad=torch.zeros(b, values.shape[1], dtype=torch.bool, device=device))

    return spec, Pixels(), tokens


def omnissl_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    from omnissl.recipe import OptimConfig
    from omnissl.train.optim import make_optimizer

    return make_optimizer(model, OptimConfig(lr=LR, weight_decay=WD, betas=list(BETAS)), LR, device)


def timm_vit(s: Settings, img: int, class_token: bool, dynamic: bool = False) -> nn.Module:
    import timm

    kwargs = {"dynamic_img_size": True} if dynamic else {}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=img,
                             class_token=class_token, global_pool="token" if class_token else "avg", **kwargs)


# -- I-JEPA ----------------------------------------------------------------------------------------


def ijepa_masks(s: Settings, steps: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """Per step: (B, V) context and (B, K, T) target positions, omnissl's ``multiblock`` masks cut
    to the batch's smallest context and target (I-JEPA's collator), so no row has filler."""
    from omnissl.maskers import MultiBlockMasker

    _, _, tokens = omnissl_pixels(s, torch.device("cpu"))
    batch = tokens(torch.zeros(s.batch, 3, s.img, s.img))
    masker = MultiBlockMasker(num_targets=4)
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        mask = masker(batch, generator)
        v = int((~mask.visible_pad).sum(1).min())
        t = int((~mask.target_pad).sum(2).min())
        out.append((mask.visible_idx[:, :v].to(device), mask.target_idx[:, :, :t].to(device)))
    return out


def ijepa_lightly(s: Settings, device: torch.device, masks: list[tuple[Tensor, Tensor]],
                  total: int) -> tuple[nn.Module, Step]:
    from lightly.models import utils
    from lightly.models.modules import IJEPAPredictorTIMM, MaskedVisionTransformerTIMM
    from lightly.utils.scheduler import cosine_schedule

    encoder = MaskedVisionTransformerTIMM(vit=timm_vit(s, s.img, class_token=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = IJEPAPredictorTIMM(num_patches=s.grid ** 2, depth=s.pred_depth, mlp_dim=DIM,
                                       predictor_embed_dim=s.pred_dim, num_heads=s.pred_heads)
    target = copy.deepcopy(encoder).requires_grad_(False).eval()
    model = nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target": target}).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=BETAS,
                                  weight_decay=WD)
    images = torch.rand(s.batch, 3, s.img, s.img, device=device)

    def step(i: int) -> float:
        context, targets = masks[i]
        pred_masks = list(targets.unbind(1))  # K tensors of (B, T)
        z = encoder.encode(images, idx_keep=context)
        z = predictor(z, context, pred_masks)  # [K*B, T, D]
        with torch.no_grad():
            h = target.encode(images)
            h = F.layer_norm(h, (h.size(-1),))
            h = utils.repeat_interleave_batch(utils.apply_masks(h, pred_masks), s.batch, repeat=1)
        loss = F.smooth_l1_loss(z, h)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        utils.update_momentum(encoder, target, cosine_schedule(i, total, 0.996, 1.0))
        return float(loss.detach())

    return model, step


def ijepa_omnissl(s: Settings, device: torch.device, masks: list[tuple[Tensor, Tensor]],
                  total: int) -> tuple[nn.Module, Step]:
    from omnissl.encoders import TokenEncoder
    from omnissl.maskers.base import _select
    from omnissl.maskers.multiblock import MultiBlockMask
    from omnissl.objectives.ijepa import IJEPA

    spec, modality, tokens = omnissl_pixels(s, device)
    model = IJEPA(TokenEncoder(spec, modality, size="tiny"), modality, pred_dim=s.pred_dim,
                  pred_depth=s.pred_depth, pred_heads=s.pred_heads, momentum=0.996, loss="smooth_l1").to(device)
    optimizer = omnissl_optimizer(model, device)
    images = torch.rand(s.batch, 3, s.img, s.img, device=device)
    n = s.grid ** 2

    def as_mask(context: Tensor, targets: Tensor) -> MultiBlockMask:
        b, k, t = targets.shape
        hidden = torch.zeros(b, n, dtype=torch.bool, device=device)
        hidden.scatter_(1, targets.reshape(b, k * t), True)
        hidden_idx, hidden_pad = _select(hidden)
        no_pad = torch.zeros_like(context, dtype=torch.bool)
        return MultiBlockMask(hidden, context, no_pad, hidden_idx, hidden_pad, targets,
                              torch.zeros_like(targets, dtype=torch.bool))

    omnissl_masks = [as_mask(*m) for m in masks]  # built once: masks come from the loop's masker

    def step(i: int) -> float:
        out = model(tokens(images), omnissl_masks[i])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.after_step(i, total)
        return float(out.loss.detach())

    return model, step


# -- iBOT ------------------------------------------------------------------------------------------


def ibot_masks(s: Settings, steps: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """Per step: (2B, H, W) MIM mask of the global views (lightly's ``random_block_mask``; row
    ``j * B + b`` is view j of sample b, lightly's order) and (L*B, 2) top-left corners of the
    local views' boxes (row ``j * B + b``)."""
    from lightly.models.utils import random_block_mask

    torch.manual_seed(0)
    random.seed(0)  # random_block_mask draws with Python's random module
    out = []
    room = s.grid - s.local_grid + 1
    for _ in range(steps):
        mim = random_block_mask(size=(2 * s.batch, s.grid, s.grid), min_num_masks_per_block=4 if s.grid >= 8 else 1)
        corners = torch.randint(room, (s.local_views * s.batch, 2))
        out.append((mim.to(device), corners.to(device)))
    return out


def ibot_lightly(s: Settings, device: torch.device, masks: list[tuple[Tensor, Tensor]],
                 total: int) -> tuple[nn.Module, Step]:
    from lightly.loss import DINOLoss, IBOTPatchLoss
    from lightly.models import utils
    from lightly.models.modules import DINOProjectionHead, MaskedVisionTransformerTIMM
    from lightly.utils.scheduler import cosine_schedule

    student = MaskedVisionTransformerTIMM(vit=timm_vit(s, s.img, class_token=True, dynamic=True), antialias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = DINOProjectionHead(input_dim=DIM, output_dim=s.out_dim)
        teacher_head = DINOProjectionHead(input_dim=DIM, output_dim=s.out_dim)  # weight norm: no deepcopy
    teacher_head.load_state_dict(head.state_dict())
    teacher_head.requires_grad_(False).eval()
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    dino = DINOLoss(output_dim=s.out_dim, teacher_temp=0.04, warmup_teacher_temp=0.04)
    mim_loss = IBOTPatchLoss(output_dim=s.out_dim, teacher_temp=0.04)
    model = nn.ModuleDict({"student": student, "head": head, "teacher": teacher, "teacher_head": teacher_head,
                           "dino": dino, "mim": mim_loss}).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=BETAS,
                                  weight_decay=WD)
    images = torch.rand(s.batch, 3, s.img, s.img, device=device)
    global_views = torch.cat([images, images])  # 2 global views of 224 px: 196 tokens + class token
    local_views = torch.rand(s.local_views * s.batch, 3, s.local_img, s.local_img, device=device)
    views = 2 + s.local_views

    def step(i: int) -> float:
        block_mask = masks[i][0]  # [2B, H, W]
        mask = torch.cat([block_mask.new_zeros(block_mask.shape[0], 1), block_mask.flatten(1)], dim=1)
        with torch.no_grad():
            t_features = teacher.encode(global_views)
            t_cls = teacher_head(t_features[:, 0])
            t_masked = teacher_head(t_features[mask])
        s_features = student.encode(global_views, mask=mask)
        s_cls = head(s_features[:, 0])
        s_masked = head(s_features[mask])
        s_local = head(student.encode(local_views)[:, 0])
        s_all = torch.cat([s_cls, s_local])
        loss = dino(teacher_out=list(t_cls.chunk(2)), student_out=list(s_all.chunk(views)), teacher_temp=0.04)
        loss = loss + mim_loss(teacher_out=t_masked, student_out=s_masked, mask=block_mask, teacher_temp=0.04)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        m = cosine_schedule(i, total, 0.996, 1.0)
        utils.update_momentum(student, teacher, m)
        utils.update_momentum(head, teacher_head, m)
        return float(loss.detach())

    return model, step


def ibot_omnissl(s: Settings, device: torch.device, masks: list[tuple[Tensor, Tensor]],
                 total: int) -> tuple[nn.Module, Step]:
    from omnissl.encoders import TokenEncoder
    from omnissl.maskers.base import Mask
    from omnissl.objectives.ibot import IBOT, IBOTViews

    spec, modality, tokens = omnissl_pixels(s, device)
    n, g, lg = s.grid ** 2, s.grid, s.local_grid
    local_share = lg * lg / n
    model = IBOT(TokenEncoder(spec, modality, size="tiny"), modality, out_dim=s.out_dim,
                 local_views=s.local_views, global_scale=(1.0, 1.0), local_scale=(local_share, local_share),
                 teacher_temp=0.04, warmup_teacher_temp=0.04, momentum=0.996).to(device)
    optimizer = omnissl_optimizer(model, device)
    images = torch.rand(s.batch, 3, s.img, s.img, device=device)
    b = s.batch
    box = (torch.arange(lg, device=device)[:, None] * g + torch.arange(lg, device=device)).flatten()  # [lg*lg]

    def as_views(mim: Tensor, corners: Tensor) -> IBOTViews:
        # lightly's rows are view-major (j * B + b); omnissl's sample-major (b * V + j).
        hidden = mim.flatten(1).view(2, b, n).transpose(0, 1).reshape(2 * b, n)
        no_pad = torch.zeros(2 * b, n, dtype=torch.bool, device=device)
        global_idx = torch.arange(n, device=device).expand(2 * b, -1).contiguous()
        local_idx = ((corners[:, :1] * g + corners[:, 1:]) + box).view(s.local_views, b, -1)
        local_idx = local_idx.transpose(0, 1).reshape(b * s.local_views, -1)
        return IBOTViews(global_idx, no_pad, local_idx, torch.zeros_like(local_idx, dtype=torch.bool),
                         Mask.from_hidden(hidden, no_pad))

    omnissl_views = [as_views(*m) for m in masks]  # built once: views and masks come from make_mask

    def step(i: int) -> float:
        out = model(tokens(images), omnissl_views[i])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.after_step(i, total)
        return float(out.loss.detach())

    return model, step


OBJECTIVES = {
    "ijepa": (ijepa_masks, ijepa_lightly, ijepa_omnissl),
    "ibot": (ibot_masks, ibot_lightly, ibot_omnissl),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(name: str, s: Settings, device: torch.device, flops: bool = False) -> float:
    make_masks, lightly_side, omnissl_side = OBJECTIVES[name]
    total = s.warmup + s.steps
    masks = make_masks(s, total, device)
    torch.manual_seed(0)
    sides = {"lightly": lightly_side(s, device, masks, total), "omnissl": omnissl_side(s, device, masks, total)}
    if flops:  # work per step, counted on step 0's masks (before timing; it steps the models once)
        from torch.utils.flop_counter import FlopCounterMode

        for side, (_, step) in sides.items():
            with FlopCounterMode(display=False) as counter:
                step(0)
            print(f"  {name} {side:<8} {counter.get_total_flops() / 1e9:.1f} GFLOP per step (batch {s.batch})")
    times: dict[str, list[float]] = {side: [] for side in sides}
    faults: dict[str, list[tuple[int, float]]] = {side: [] for side in sides}  # (minor faults, system s)
    for i in range(total):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]  # alternate who goes first
        for side in order:
            step = sides[side][1]
            sync(device)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            step(i)
            sync(device)
            if i >= s.warmup:
                times[side].append(time.perf_counter() - began)
                after = resource.getrusage(resource.RUSAGE_SELF)
                faults[side].append((after.ru_minflt - usage.ru_minflt, after.ru_stime - usage.ru_stime))
    if name == "ijepa":
        v, t = masks[0][0].shape[1], masks[0][1].shape[2]
        what = f"context {v} tokens, 4 targets of {t}, predictor {s.pred_dim}-d x {s.pred_depth}"
    else:
        what = (f"2 global views of {s.grid ** 2} tokens + {s.local_views} local of {s.local_grid ** 2}, "
                f"{s.out_dim} prototypes")
    print(f"\n{name} on {device.type}: ViT-Tiny/16 {s.img}px batch {s.batch}, {what}; "
          f"{s.steps} timed steps after {s.warmup} warm-up, {torch.get_num_threads()} threads")
    for side, (model, _) in sides.items():
        ms = [1000 * t for t in times[side]]
        print(f"  {side:<8} step {statistics.median(ms):9.1f} ms (median; min {min(ms):.1f}, max {max(ms):.1f})  "
              f"trainable params {params(model) / 1e6:.3f} M")
    for side in sides:  # fresh memory the step touched: the kernel's time, not the operators'
        minflt = statistics.median(f for f, _ in faults[side])
        system = statistics.median(t for _, t in faults[side])
        print(f"  {side:<8} minor page faults {minflt:9.0f} per step, system time {system:.2f} s (medians)")
    ratio = statistics.median(times["omnissl"]) / statistics.median(times["lightly"])
    print(f"  {name} {device.type} step-time ratio omnissl/lightly: {ratio:.3f}")
    del sides
    gc.collect()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", default="ijepa,ibot", help="comma-separated: ijepa, ibot")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--local-views", type=int, default=6, help="iBOT's local views per sample")
    parser.add_argument("--pred-dim", type=int, default=96, help="I-JEPA predictor width")
    parser.add_argument("--pred-depth", type=int, default=6, help="I-JEPA predictor blocks")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--flops", action="store_true", help="also count each side's FLOPs of one step")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 64 px images, batch 4, 2 local views of 32 px, 1+1 steps, 512 prototypes")
    args = parser.parse_args()
    names = [n.strip() for n in args.objectives.split(",") if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        parser.error(f"--objectives: unknown {unknown}; choose from {', '.join(OBJECTIVES)}")
    if args.quick:
        s = Settings(img=64, batch=4, local_views=2, local_img=32, pred_dim=96, pred_depth=2, pred_heads=3,
                     out_dim=512, steps=1, warmup=1)
    else:
        s = Settings(img=224, batch=args.batch, local_views=args.local_views, local_img=96, pred_dim=args.pred_dim,
                     pred_depth=args.pred_depth, pred_heads=3, out_dim=OUT_DIM, steps=args.steps, warmup=args.warmup)
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        parser.error("--device cuda: no CUDA device is available")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), load average {os.getloadavg()[0]:.2f}")
    ratios = {(n, d.type): run(n, s, d, args.flops) for d in devices for n in names}
    print()
    for (n, d), r in ratios.items():
        print(f"{n} {d} step-time ratio omnissl/lightly: {r:.3f}")
    worst = max(ratios, key=ratios.get)
    print(f"worst step-time ratio omnissl/lightly ({worst[0]}, {worst[1]}): {ratios[worst]:.3f}")


if __name__ == "__main__":
    main()
