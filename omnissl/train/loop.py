"""The one training loop, for every modality.

Read it top to bottom: set up (device, components, data, optimiser, resume),
then loop (forward, backward, clip, step, log; validate and checkpoint on a
schedule), then finish (final checkpoint, plots, probes). Pluggability lives
in the components, not in callbacks inside the loop; run-time hooks fire only
on logged steps and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from omnissl.build import build_all
from omnissl.errors import TrainingError
from omnissl.plugins import Registry
from omnissl.recipe import Recipe
from omnissl.train.checkpoint import LAST, load_checkpoint, save_checkpoint
from omnissl.train.data import (SeededBatchSampler, TokenDataset, fixed_batches, make_loader, split_indices,
                                step_generator, validate_tokens)
from omnissl.train.optim import lr_at, make_optimizer, peak_lr


@dataclass
class RunInfo:
    """What run-time hooks are told about the run."""

    out_dir: Path
    recipe: dict[str, Any]
    start_step: int
    total_steps: int
    dataset: Any = None  # the data set being trained on (plugins store its statistics with the run)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"train.device={name!r} but CUDA is not available; use train.device=auto or cpu")
    return device


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None and path.exists():  # resuming: drop what came after the checkpoint
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= keep_until]
            path.write_text("".join(line + "\n" for line in kept))
        elif keep_until is None:
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def train(recipe: Recipe, registry: Registry, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Pre-train as the recipe says, writing the run folder ``out_dir``; returns the final metrics."""
    t, cfg = recipe.train, recipe.optim
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    device = pick_device(t.device)
    torch.manual_seed(t.seed)  # model initialisation
    parts = build_all(recipe, registry)
    modality, objective, masker = parts.modality, parts.objective.to(device), parts.masker
    (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.raw, sort_keys=False))

    micro = t.micro_batch_size or t.batch_size
    accum = t.batch_size // micro
    train_idx, val_idx = split_indices(len(parts.dataset), recipe.get("data", "val_fraction", 0.1), t.seed)
    tokens = TokenDataset(parts.dataset, modality)
    lr_peak = peak_lr(cfg, t.batch_size)
    optimizer = make_optimizer(objective, cfg, lr_peak, device)

    start = 0
    if resume:
        state = load_checkpoint(ckpt_dir / LAST)
        objective.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    log = MetricsLog(out_dir / "metrics.jsonl", keep_until=start if resume else None)
    run = RunInfo(out_dir, recipe.raw, start, t.steps, parts.dataset)
    hooks = registry.manager.hook
    hooks.omnissl_train_start(run=run)

    workers = int(recipe.get("data", "num_workers", 0))
    sampler = SeededBatchSampler(train_idx, micro, t.seed, start=start * accum)
    batches = iter(make_loader(tokens, sampler, workers, pin_memory=device.type == "cuda"))
    step_fn = torch.compile(objective) if t.compile else objective
    writer = _tensorboard(out_dir)

    def save(step: int) -> None:
        path = save_checkpoint({"step": step, "model": objective.state_dict(),
                                "optimizer": optimizer.state_dict()}, ckpt_dir / LAST)
        hooks.omnissl_checkpoint(run=run, step=step, path=path)

    def validate(step: int) -> float | None:
        if len(val_idx) == 0:
            return None
        objective.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(make_loader(tokens, fixed_batches(val_idx, micro)[: t.val_batches], 0)):
                batch = modality.on_device(batch.to(device))
                mask = masker(batch, step_generator(t.seed, 1, i, device=device))
                with autocast_for(t.precision, device):
                    total += float(objective(batch, mask).loss) * batch.batch_size
                count += batch.batch_size
        objective.train()
        return total / count

    objective.train()
    # A live bar on a terminal; one plain line per logged step in logs and CI.
    interactive = sys.stderr.isatty()
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
               disable=not interactive)
    began = time.perf_counter()
    window: list[float] = []
    window_terms: dict[str, torch.Tensor] = {}  # the objective's other metrics (loss per stream), summed
    window_start, samples = time.perf_counter(), 0
    last: dict[str, Any] = {}
    for step in range(start, t.steps):
        lr = lr_at(step, t.steps, lr_peak, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(t.seed * 1_000_003 + step)  # dropout / drop-path of this step
        step_loss = torch.zeros((), device=device)
        for m in range(accum):
            batch = modality.on_device(next(batches).to(device, non_blocking=True))
            if step == start and m == 0:  # what the encoder sees, once per run
                validate_tokens(batch, tokens.spec, f"{modality.name} batch after on_device", "on_device")
            mask = masker(batch, step_generator(t.seed, 0, step, m, device=device))
            with autocast_for(t.precision, device):
                out = step_fn(batch, mask)
            (out.loss / accum).backward()
            step_loss += out.loss.detach() / accum
            for key, value in out.metrics.items():
                if key != "loss":  # kept on the device until logged: no extra synchronisation
                    window_terms[key] = window_terms.get(key, 0.0) + value.detach().float() / accum
            samples += batch.batch_size
        grad_norm = (torch.nn.utils.clip_grad_norm_(objective.parameters(), t.clip_grad)
                     if t.clip_grad else None)
        loss_value = float(step_loss)
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"loss became {loss_value} at step {step + 1}; stopped without saving, so "
                f"{ckpt_dir / LAST} holds the last good state. Lower optim.lr / optim.base_lr, raise "
                f"optim.warmup_steps, or set train.precision=fp32, then resume with --resume.")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss_value)
        done = step + 1

        val_loss = validate(done) if (t.val_every and done % t.val_every == 0) or done == t.steps else None
        if done % t.log_every == 0 or val_loss is not None:
            elapsed = time.perf_counter() - window_start
            record: dict[str, Any] = {"step": done, "loss": sum(window) / len(window), "lr": lr,
                                      "samples_per_s": samples / max(elapsed, 1e-9)}
            record.update({key: float(total) / len(window) for key, total in window_terms.items()})
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            if val_loss is not None:
                record["val_loss"] = val_loss
            log.write(record)
            if writer is not None:
                for key, value in record.items():
                    if key != "step":
                        writer.add_scalar(key, value, done)
            hooks.omnissl_log(run=run, step=done, metrics=record)
            shown = {k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "val_loss", "samples_per_s")}
            bar.set_postfix(shown)
            if not interactive:
                eta = (time.perf_counter() - began) / (done - start) * (t.steps - done)
                print(f"step {done}/{t.steps}  " + "  ".join(f"{k} {v}" for k, v in shown.items())
                      + f"  eta {eta:.0f}s", file=sys.stderr, flush=True)
            last = record
            window, window_terms, window_start, samples = [], {}, time.perf_counter(), 0
        bar.update(1)
        if done % t.ckpt_every == 0 or done == t.steps:
            save(done)
    bar.close()
    if writer is not None:
        writer.close()
    torch.save(objective.encoder.state_dict(), ckpt_dir / "encoder.pt")

    from omnissl.viz import plot_loss_curve, plot_reconstructions
    plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
    if recipe.viz.enabled and len(val_idx):
        plot_reconstructions(objective, modality, masker, tokens, val_idx, recipe, device,
                             out_dir / "reconstruction.png")
    hooks.omnissl_train_end(run=run, metrics=last)
    return last


def _tensorboard(out_dir: Path) -> Any:
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))

