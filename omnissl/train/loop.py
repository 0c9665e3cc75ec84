"""The one training loop, for every modality.

Read it top to bottom: set up (device, components, data, optimiser, resume),
then loop (forward, backward, clip, step, log; validate and checkpoint on a
schedule), then finish (final checkpoint, plots, probes). Pluggability lives
in the components, not in callbacks inside the loop; run-time hooks fire only
on logged steps and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from omnissl.build import build_all
from omnissl.errors import TrainingError
from omnissl.objectives.base import draw_mask
from omnissl.plugins import Registry
from omnissl.recipe import Recipe
from omnissl.train.checkpoint import ENCODER, LAST, load_checkpoint, save_checkpoint, save_weights
from omnissl.train.data import (SeededBatchSampler, TokenDataset, fixed_batches, held_out_split, label_subset,
                                make_loader, step_generator, task_of, validate_tokens)
from omnissl.train.optim import lr_at, make_optimizer, peak_lr
from omnissl.train.runfolder import (DATA_SUMMARY, METRICS, MetricsLog, check_resume_recipe, check_start,
                                     load_training_state, remove_run, write_recipe)
from omnissl.train.summary import data_summary, format_summary, write_summary


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


class LogWindow:
    """The steps since the last logged one: their losses, the objective's other metrics and the
    samples seen. Checkpointed, so a resumed run logs the same averages as an uninterrupted one
    whatever ``ckpt_every`` and ``log_every`` are."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.terms: dict[str, torch.Tensor] = {}  # summed on the device: no synchronisation until logged
        self.samples = 0
        self.started = time.perf_counter()

    def add(self, key: str, value: torch.Tensor) -> None:
        self.terms[key] = self.terms.get(key, 0.0) + value

    def record(self, step: int, lr: float) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        record: dict[str, Any] = {"step": step, "loss": sum(self.losses) / len(self.losses), "lr": lr,
                                  "samples_per_s": self.samples / max(elapsed, 1e-9)}
        record.update({key: float(total) / len(self.losses) for key, total in self.terms.items()})
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "samples": self.samples,
                "terms": {k: v.detach().cpu() for k, v in self.terms.items()}}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.losses = [float(v) for v in state["losses"]]
        self.samples = int(state["samples"])
        self.terms = {k: v.to(device) for k, v in state["terms"].items()}


def _grad_norm(params: list[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    """The gradients' total norm, clipped to ``clip`` when given."""
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def train(recipe: Recipe, registry: Registry, out_dir: Path, resume: bool = False, overwrite: bool = False,
          allow_recipe_change: bool = False, dataset: Any = None) -> dict[str, Any]:
    """Pre-train as the recipe says, writing the run folder ``out_dir``; returns the final metrics.

    ``resume`` continues the run in ``out_dir`` from its last checkpoint (``allow_recipe_change``
    lets the recipe differ from the run's); ``overwrite`` starts over a folder that holds a run.
    ``dataset``: the recipe's data set when the caller has built it already (``omnissl finetune``
    trains several runs on one data set), so it is not built again.
    """
    t, cfg = recipe.train, recipe.optim
    ckpt_dir = out_dir / "checkpoints"
    check_start(out_dir, resume, overwrite)
    device = pick_device(t.device)
    start, state, changes = 0, None, None
    if resume:  # the cheap check first: a different recipe is refused before anything is built
        state = load_checkpoint(ckpt_dir / LAST)
        start = int(state["step"])
        changes = check_resume_recipe(out_dir, recipe, registry, start, allow_recipe_change)
    torch.manual_seed(t.seed)  # model initialisation
    parts = build_all(recipe, registry, dataset)
    modality, objective, masker = parts.modality, parts.objective.to(device), parts.masker

    micro = t.micro_batch_size or t.batch_size
    accum = t.batch_size // micro
    split = held_out_split(parts.dataset, recipe.get("data", "val_fraction", 0.1), split_seed(recipe),
                           recipe.get("data", "split", "auto"))
    train_idx, val_idx = split.train, split.held_out
    tokens = TokenDataset(parts.dataset, modality)
    if getattr(objective, "uses_labels", False):  # fine-tuning: labelled samples, a fraction of them
        train_idx, val_idx = supervised_indices(tokens, split, objective.label_fraction, t.seed)
        split.info.update(labelled_train=int(len(train_idx)), labelled_held_out=int(len(val_idx)),
                          label_fraction=objective.label_fraction)
    lr_peak = peak_lr(cfg, t.batch_size)
    optimizer = make_optimizer(objective, cfg, lr_peak, device)
    window = LogWindow()
    if state is not None:
        load_training_state(objective, optimizer, state, ckpt_dir / LAST)
        if "log_window" in state:
            window.load_state_dict(state["log_window"], device)
    saved_step = start if resume else None  # the last checkpoint known to exist and be finite

    # Everything is checked: from here on the run folder is written.
    if overwrite:
        remove_run(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(out_dir, recipe, registry, start, changes)
    summary = data_summary(parts.dataset, recipe.raw["data"]["name"], split.info)
    write_summary(summary, out_dir / DATA_SUMMARY)
    print(format_summary(summary), file=sys.stderr, flush=True)
    log = MetricsLog(out_dir / METRICS, keep_until=start if resume else None)
    run = RunInfo(out_dir, recipe.raw, start, t.steps, parts.dataset)
    hooks = registry.manager.hook
    hooks.omnissl_train_start(run=run)

    workers = int(recipe.get("data", "num_workers", 0))
    sampler = SeededBatchSampler(train_idx, micro, t.seed, start=start * accum)
    batches = iter(make_loader(tokens, sampler, workers, pin_memory=device.type == "cuda"))
    step_fn = torch.compile(objective) if t.compile else objective
    params = [p for p in objective.parameters() if p.requires_grad]
    writer = _tensorboard(out_dir)

    def save(step: int) -> None:
        nonlocal saved_step
        try:
            path = save_checkpoint({"step": step, "model": objective.state_dict(),
                                    "optimizer": optimizer.state_dict(), "log_window": window.state_dict()},
                                   ckpt_dir / LAST)
        except TrainingError as exc:
            raise TrainingError(f"at step {step}: {exc}; {_last_good(ckpt_dir, saved_step)}") from None
        saved_step = step
        hooks.omnissl_checkpoint(run=run, step=step, path=path)

    def validate(step: int) -> float | None:
        if len(val_idx) == 0:
            return None
        objective.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(make_loader(tokens, fixed_batches(val_idx, micro)[: t.val_batches], 0)):
                batch = modality.on_device(batch.to(device))
                mask = draw_mask(objective, masker, batch, step_generator(t.seed, 1, i, device=device))
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
    last: dict[str, Any] = {}
    for step in range(start, t.steps):
        lr = lr_at(step, t.steps, lr_peak, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # layer-wise decay, where set
        torch.manual_seed(t.seed * 1_000_003 + step)  # dropout / drop-path of this step
        step_loss = torch.zeros((), device=device)
        terms: dict[str, torch.Tensor] = {}
        samples = 0
        for m in range(accum):
            batch = modality.on_device(next(batches).to(device, non_blocking=True))
            if step == start and m == 0:  # what the encoder sees, once per run
                validate_tokens(batch, tokens.spec, f"{modality.name} batch after on_device", "on_device")
            mask = draw_mask(objective, masker, batch, step_generator(t.seed, 0, step, m, device=device))
            with autocast_for(t.precision, device):
                out = step_fn(batch, mask)
            (out.loss / accum).backward()
            step_loss += out.loss.detach() / accum
            for key, value in out.metrics.items():
                if key != "loss":  # kept on the device until logged: no extra synchronisation
                    terms[key] = terms.get(key, 0.0) + value.detach().float() / accum
            samples += batch.batch_size
        grad_norm = _grad_norm(params, t.clip_grad)
        # A step whose loss or gradient is not finite is never applied, so never saved.
        loss_value, norm_value = float(step_loss), float(grad_norm)
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            what = f"the loss became {loss_value}" if not math.isfinite(loss_value) else \
                f"the gradient norm became {norm_value} (loss {loss_value:.4g})"
            raise TrainingError(
                f"{what} at step {step + 1}; that step was not applied and nothing was saved. Lower optim.lr "
                f"(or optim.base_lr), raise optim.warmup_steps, lower train.clip_grad or set "
                f"train.precision=fp32; {_last_good(ckpt_dir, saved_step)}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(objective, "after_step"):  # an EMA teacher follows the student here
            objective.after_step(step, t.steps)
        window.losses.append(loss_value)
        window.samples += samples
        for key, value in terms.items():
            window.add(key, value)
        done = step + 1

        val_loss = validate(done) if (t.val_every and done % t.val_every == 0) or done == t.steps else None
        if done % t.log_every == 0 or val_loss is not None:
            record = window.record(done, lr)
            record["grad_norm"] = norm_value
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
            window = LogWindow()
        bar.update(1)
        if done % t.ckpt_every == 0 or done == t.steps:
            save(done)
    bar.close()
    if writer is not None:
        writer.close()
    save_weights(objective.encoder.state_dict(), ckpt_dir / ENCODER, {"step": str(t.steps)})

    from omnissl.viz import plot_loss_curve, plot_reconstructions
    plot_loss_curve(out_dir / METRICS, out_dir / "loss_curve.png")
    if recipe.viz.enabled and hasattr(objective, "reconstruct"):  # held-out samples, else training samples
        plot_reconstructions(objective, modality, masker, tokens, val_idx if len(val_idx) else train_idx, recipe,
                             device, out_dir / "reconstruction.png")
    hooks.omnissl_train_end(run=run, metrics=last)
    return last


def split_seed(recipe: Recipe) -> int:
    """The seed of the held-out split: ``data.split_seed``, else ``train.seed`` (fine-tuning keeps
    its pre-training run's split while drawing its own initialisation and data order)."""
    seed = recipe.get("data", "split_seed")
    return recipe.train.seed if seed is None else int(seed)


def supervised_indices(tokens: TokenDataset, split: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """Labelled training samples (``fraction`` of them, per class) and labelled held-out ones."""
    if tokens.labels is None:
        raise TrainingError("this objective learns from labels, and the data set has none; use a labelled data "
                            "set (class folders, a label column)")
    labels = tokens.labels.astype(np.float64)
    task = task_of(tokens.dataset, labels)
    train_idx = label_subset(labels, split.train, fraction, seed, task)
    val_idx = label_subset(labels, split.held_out, 1.0, seed, task)
    if len(train_idx) == 0:
        raise TrainingError("the training split has no labelled samples to fine-tune on")
    return train_idx, val_idx


def _last_good(ckpt_dir: Path, saved_step: int | None) -> str:
    """Where the run can go on from, for error messages."""
    if saved_step is None:
        return "no checkpoint was written yet: start again with --overwrite"
    return (f"the last good state is {ckpt_dir / LAST} (step {saved_step}): continue from it with --resume "
            f"--allow-recipe-change")


def _tensorboard(out_dir: Path) -> Any:
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))

