"""MAE training-step time and peak memory: omnissl against lightly, same settings, one process.

Settings (both sides): ViT-Tiny/16 encoder (192-d, 12 blocks, 3 heads) at 224 px,
batch 32, mask ratio 0.75, MSE on raw pixels of hidden patches, a 512-d decoder with
``--decoder-depth`` blocks and 16 heads, AdamW (lr 1.5e-4, betas 0.9/0.95, wd 0.05).
lightly's side follows its MAE example (``MaskedVisionTransformerTIMM`` +
``MAEDecoderTIMM``, ``utils.random_token_mask``/``set_at_index``/``get_at_index``).
Each side's step starts from what its data loader delivers and covers forward, backward
and the optimiser step: lightly's loader delivers images (its step patchifies the
target), omnissl's delivers patch tokens (patchified in the loader's workers, as
``omnissl train`` does). A third row times omnissl's step starting from the same images
as lightly (patchifying inside the step) for a like-for-like view of the model alone.
Sides alternate each round so drift in machine load hits all alike; medians are reported.

    python benchmarks/mae_step.py            # CPU, and CUDA when available
    python benchmarks/mae_step.py --steps 10 --device cpu

The last line is the omnissl/lightly step-time ratio on CPU (lower is better for omnissl).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import nn

IMG, PATCH, BATCH, RATIO = 224, 16, 32, 0.75


def lightly_step(device: torch.device, decoder_depth: int) -> tuple[nn.Module, Callable[[torch.Tensor], float]]:
    import timm
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    backbone = MaskedVisionTransformerTIMM(vit=vit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = MAEDecoderTIMM(num_patches=vit.patch_embed.num_patches, patch_size=PATCH, embed_dim=vit.embed_dim,
                                 decoder_embed_dim=512, decoder_depth=decoder_depth, decoder_num_heads=16)
    model = nn.ModuleDict({"backbone": backbone, "decoder": decoder}).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    seq = backbone.sequence_length

    def step(images: torch.Tensor) -> float:
        b = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(b, seq), mask_ratio=RATIO, device=images.device)
        encoded = backbone.encode(images=images, idx_keep=idx_keep)
        x = decoder.embed(encoded)
        full = utils.repeat_token(decoder.mask_token, (b, seq))
        full = utils.set_at_index(full, idx_keep, x.type_as(full))
        pred = decoder.predict(utils.get_at_index(decoder.decode(full), idx_mask))
        target = utils.get_at_index(utils.patchify(images, PATCH), idx_mask - 1)
        loss = nn.functional.mse_loss(pred, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return model, step


def omnissl_step(device: torch.device, decoder_depth: int,
                 from_images: bool = False) -> tuple[nn.Module, Callable[[torch.Tensor], float]]:
    from omnissl import CoordGroup, Modality, TokenBatch, TokenSpec
    from omnissl.encoders import TokenEncoder
    from omnissl.maskers import RandomMasker
    from omnissl.objectives import MAE
    from omnissl.recipe import OptimConfig
    from omnissl.tokenizers import GridPatchifier
    from omnissl.train.optim import make_optimizer

    patchifier = GridPatchifier(PATCH, 3, ndim=2)
    spec = TokenSpec(patchifier.value_dim, (CoordGroup("grid", 2),))

    class Pixels(Modality):
        def spec(self) -> TokenSpec:
            return spec

    encoder = TokenEncoder(spec, Pixels(), size="tiny")
    model = MAE(encoder, Pixels(), decoder_dim=512, decoder_depth=decoder_depth, decoder_heads=16,
                norm_target=False).to(device)
    optimizer = make_optimizer(model, OptimConfig(lr=1.5e-4, weight_decay=0.05, betas=[0.9, 0.95]), 1.5e-4, device)
    masker = RandomMasker(RATIO)
    grid = (IMG // PATCH, IMG // PATCH)
    coords = patchifier.grid_coords(grid).to(device)

    def tokens(images: torch.Tensor) -> TokenBatch:
        b = images.shape[0]
        values = patchifier.patchify(images)  # [B, 196, 768]
        return TokenBatch(values=values, coords=coords.expand(b, -1, -1).contiguous(),
                          pad=torch.zeros(b, values.shape[1], dtype=torch.bool, device=device))

    loaded: dict[int, TokenBatch] = {}

    def step(images: torch.Tensor) -> float:
        if from_images:
            batch = tokens(images)
        else:  # what the DataLoader hands over: tokens made in its workers, outside the step
            batch = loaded.setdefault(id(images), tokens(images))
        out = model(batch, masker(batch))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    return model, step


def peak_memory(device: torch.device, fn: Callable[[], float]) -> float:
    """Peak memory of one step in MiB: the CUDA allocator's peak, or on CPU the peak of
    torch's allocations during the step as recorded by its profiler."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Peak of the running sum of allocations and frees, in allocation order.
    events = sorted((e for e in prof.events() if e.cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def run(device: torch.device, steps: int, warmup: int, decoder_depth: int) -> float:
    torch.manual_seed(0)
    images = torch.rand(BATCH, 3, IMG, IMG, device=device)
    sides = {"lightly": lightly_step(device, decoder_depth), "omnissl": omnissl_step(device, decoder_depth),
             "omnissl+patchify": omnissl_step(device, decoder_depth, from_images=True)}
    params = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(warmup + steps):
        for name, (_, step) in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    memory = {name: peak_memory(device, lambda s=step: s(images)) for name, (_, step) in sides.items()}
    print(f"\n{device.type}: ViT-Tiny/16 224px batch {BATCH} mask {RATIO}, decoder 512-d x {decoder_depth}, "
          f"{steps} timed steps after {warmup} warm-up, {torch.get_num_threads()} threads")
    for name in sides:
        print(f"  {name:<16} step {statistics.median(times[name]) * 1000:8.1f} ms (median; min "
              f"{min(times[name]) * 1000:.1f})  peak memory {memory[name]:8.1f} MiB  params {params[name] / 1e6:.2f} M")
    ratio = statistics.median(times["omnissl"]) / statistics.median(times["lightly"])
    same_input = statistics.median(times["omnissl+patchify"]) / statistics.median(times["lightly"])
    print(f"  {device.type} step-time ratio (omnissl+patchify)/lightly: {same_input:.3f}")
    print(f"  {device.type} step-time ratio omnissl/lightly: {ratio:.3f}")
    del sides
    gc.collect()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decoder-depth", type=int, default=1, help="lightly's MAE example uses 1; the paper 8")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    ratios = {d.type: run(d, args.steps, args.warmup, args.decoder_depth) for d in devices}
    if "cuda" in ratios and "cpu" in ratios:
        print(f"cuda step-time ratio omnissl/lightly: {ratios['cuda']:.3f}")
    key = "cpu" if "cpu" in ratios else "cuda"
    print(f"{key} step-time ratio omnissl/lightly: {ratios[key]:.3f}")


if __name__ == "__main__":
    main()
