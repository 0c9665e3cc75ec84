"""The GPU check (run by benchmarks/gpu_check.sh): MAE ViT-B/16 bf16 training steps, omnissl
against lightly, one process; torch.compile on and off; model FLOPs utilisation; DDP over
every visible GPU (a ``torchrun`` of this file with ``--ddp``).

Settings (both sides): ViT-B/16 at 224 px, mask ratio 0.75, a 512-d decoder of 8 blocks and
16 heads (MAE's), MSE on raw pixels, AdamW (omnissl's fused AdamW; lightly's example's AdamW),
bf16 autocast. Each side's step covers forward, backward and the optimiser step from a batch
already on the GPU. FLOPs are counted by ``torch.utils.flop_counter`` on one step (forward +
backward); MFU divides the achieved FLOP/s by the GPU's dense bf16 peak, for the GPUs named in
``PEAK_BF16`` (else it is left out). Nothing is downloaded: weights are random.

    python benchmarks/gpu_check.py --out DIR            # on a CUDA machine
    python benchmarks/gpu_check.py --out DIR --tiny     # a CPU smoke run (ViT-Tiny, 64 px)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}
RATIO = 0.75


def settings(tiny: bool) -> dict:
    if tiny:
        return dict(size="tiny", timm="vit_tiny_patch16_224", img=64, batch=4, decoder_depth=1, steps=2, warmup=1)
    return dict(size="base", timm="vit_base_patch16_224", img=224, batch=128, decoder_depth=8, steps=10, warmup=3)


def lightly_mae(cfg: dict, device: torch.device) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    import timm
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM

    vit = timm.create_model(cfg["timm"], pretrained=False, num_classes=0, img_size=cfg["img"])
    backbone = MaskedVisionTransformerTIMM(vit=vit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = MAEDecoderTIMM(num_patches=vit.patch_embed.num_patches, patch_size=16, embed_dim=vit.embed_dim,
                                 decoder_embed_dim=512, decoder_depth=cfg["decoder_depth"], decoder_num_heads=16)
    model = nn.ModuleDict({"backbone": backbone, "decoder": decoder}).to(device)
    seq = backbone.sequence_length

    def loss(images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(b, seq), mask_ratio=RATIO, device=images.device)
        x = decoder.embed(backbone.encode(images=images, idx_keep=idx_keep))
        full = utils.set_at_index(utils.repeat_token(decoder.mask_token, (b, seq)), idx_keep, x.type_as(x))
        pred = decoder.predict(utils.get_at_index(decoder.decode(full), idx_mask))
        target = utils.get_at_index(utils.patchify(images, 16), idx_mask - 1)
        return nn.functional.mse_loss(pred.float(), target)

    return model, loss


def omnissl_mae(cfg: dict, device: torch.device) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    from omnissl import CoordGroup, Modality, TokenBatch, TokenSpec
    from omnissl.encoders import TokenEncoder
    from omnissl.maskers import RandomMasker
    from omnissl.objectives import MAE
    from omnissl.tokenizers import GridPatchifier

    patchifier = GridPatchifier(16, 3, ndim=2)
    spec = TokenSpec(patchifier.value_dim, (CoordGroup("grid", 2),))

    class Pixels(Modality):
        def spec(self) -> TokenSpec:
            return spec

    model = MAE(TokenEncoder(spec, Pixels(), size=cfg["size"]), Pixels(), decoder_dim=512,
                decoder_depth=cfg["decoder_depth"], decoder_heads=16, norm_target=False).to(device)
    masker = RandomMasker(RATIO)
    grid = (cfg["img"] // 16, cfg["img"] // 16)
    coords = patchifier.grid_coords(grid).to(device)
    batches: dict[int, TokenBatch] = {}

    def tokens(images: torch.Tensor) -> TokenBatch:  # what omnissl's loader delivers: patch tokens
        b = images.shape[0]
        values = patchifier.patchify(images)
        return TokenBatch(values=values, coords=coords.expand(b, -1, -1).contiguous(),
                          pad=torch.zeros(b, values.shape[1], dtype=torch.bool, device=device))

    def loss(images: torch.Tensor) -> torch.Tensor:
        batch = batches.setdefault(id(images), tokens(images))
        return model(batch, masker(batch)).loss

    return model, loss


def timed(device: torch.device, model: nn.Module, loss_fn: Callable, images: torch.Tensor, steps: int,
          warmup: int, bf16: bool) -> dict:
    from omnissl.recipe import OptimConfig
    from omnissl.train.optim import make_optimizer

    optimizer = make_optimizer(model, OptimConfig(lr=1.5e-4, weight_decay=0.05, betas=[0.9, 0.95]), 1.5e-4, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = loss_fn(images)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    median = statistics.median(times)
    return {"step_ms": median * 1000, "images_per_s": images.shape[0] / median,
            "flops_per_step": counter.get_total_flops(), "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def single(args: argparse.Namespace) -> dict:
    cfg = settings(args.tiny)
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    images = torch.rand(cfg["batch"], 3, cfg["img"], cfg["img"], device=device)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if cuda else None
    rows = {}
    sides = [("lightly", lightly_mae, False), ("omnissl", omnissl_mae, False)]
    if cuda:
        sides.append(("omnissl+compile", omnissl_mae, True))
    else:
        print("torch.compile row skipped: it is timed on CUDA only (compiling on this CPU takes minutes)")
    for label, build, compile_ in sides:
        model, loss_fn = build(cfg, device)
        if compile_:
            loss_fn = torch.compile(loss_fn)
        try:
            row = timed(device, model, loss_fn, images, cfg["steps"], cfg["warmup"], bf16=cuda)
        except ImportError as exc:
            print(f"{label}: skipped ({exc}; `make bench-deps` installs it)")
            continue
        row["mfu"] = row["flops_per_step"] / (row["step_ms"] / 1000) / peak if peak else None
        rows[label] = row
        print(f"{label:<16} step {row['step_ms']:8.1f} ms  {row['images_per_s']:8.1f} images/s  "
              f"MFU {row['mfu']:.3f}" if row["mfu"] is not None else
              f"{label:<16} step {row['step_ms']:8.1f} ms  {row['images_per_s']:8.1f} images/s  MFU n/a")
        del model
        if cuda:
            torch.cuda.empty_cache()
    return {"device": name, "settings": cfg, "bf16": cuda, "single": rows}


def ddp(args: argparse.Namespace) -> None:
    """MAE steps in every process of a torchrun, through omnissl's own DDP setup (one GPU each)."""
    from omnissl import TokenBatch
    from omnissl.maskers import RandomMasker
    from omnissl.tokenizers import GridPatchifier
    from omnissl.train import distributed

    cfg = settings(args.tiny)
    dist, device = distributed.setup("ddp", torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model, _ = omnissl_mae(cfg, device)
    wrapped = distributed.wrap(model, dist, device, "bf16")
    images = torch.rand(cfg["batch"], 3, cfg["img"], cfg["img"], device=device)
    patchifier = GridPatchifier(16, 3, ndim=2)
    values = patchifier.patchify(images)
    coords = patchifier.grid_coords((cfg["img"] // 16, cfg["img"] // 16)).to(device)
    tokens = TokenBatch(values=values, coords=coords.expand(cfg["batch"], -1, -1).contiguous(),
                        pad=torch.zeros(cfg["batch"], values.shape[1], dtype=torch.bool, device=device))
    masker = RandomMasker(RATIO)
    row = timed(device, model, lambda _: wrapped(tokens, masker(tokens)).loss, images, cfg["steps"], cfg["warmup"],
                bf16=device.type == "cuda")
    if device.type == "cuda":  # torch.compile of the DDP module (its bucketed all-reduce kept)
        compiled = torch.compile(wrapped)
        fast = timed(device, model, lambda _: compiled(tokens, masker(tokens)).loss, images, cfg["steps"],
                     cfg["warmup"], bf16=True)
        row.update(compile_step_ms=fast["step_ms"], compile_images_per_s=fast["images_per_s"] * dist.world)
    if dist.is_main:
        row.update(world=dist.world, strategy=dist.strategy, global_images_per_s=row["images_per_s"] * dist.world)
        Path(args.ddp).write_text(json.dumps(row))
    dist.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json")
    parser.add_argument("--tiny", action="store_true", help="a CPU smoke run: ViT-Tiny at 64 px, 2 steps")
    parser.add_argument("--ddp", help="(set by gpu_check.sh under torchrun) where to write the DDP row")
    args = parser.parse_args()
    if args.ddp:
        ddp(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    result = single(args)
    (args.out / "single.json").write_text(json.dumps(result, indent=2))
    rows = result["single"]
    if "lightly" in rows and "omnissl" in rows:
        print(f"step-time ratio omnissl/lightly: {rows['omnissl']['step_ms'] / rows['lightly']['step_ms']:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
