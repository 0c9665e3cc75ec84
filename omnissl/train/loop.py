"""The one training loop, for every modality, in one process or many.

Read it top to bottom: :func:`setup` (device, components, data, optimiser, resume),
then the loop in :func:`train` (lr, :func:`train_step`: forward, backward, clip, step;
:func:`validate`, log and :func:`save` on a schedule), then :func:`finish` (encoder weights,
plots). Pluggability lives in the components, not in callbacks inside the loop; run-time
hooks fire only on logged steps and checkpoints, in the main process. Under torchrun every
process runs this same code on its slice of each global batch (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from omnissl.build import build_all
from omnissl.errors import TrainingError
from omnissl.objectives.base import draw_mask
from omnissl.plugins import Registry
from omnissl.recipe import Recipe
from omnissl.train import distributed
from omnissl.train.checkpoint import (ENCODER, LAST, full_model_state, load_checkpoint, load_sharded, remove_sharded,
                                      save_checkpoint, save_sharded, save_weights)
from omnissl.train.data import (HeldOutSplit, RankBatchSampler, SeededBatchSampler, TokenDataset, fixed_batches,
                                held_out_split, label_subset, make_loader, step_generator, task_of, validate_tokens)
from omnissl.train.distributed import Dist, all_reduce, full_value
from omnissl.train.logger import TrainLogger
from omnissl.train.optim import lr_at, make_optimizer, peak_lr
from omnissl.train.runfolder import (DATA_SUMMARY, METRICS, check_resume_recipe, check_start, load_training_state,
                                     remove_run, write_recipe)
from omnissl.train.summary import data_summary, format_summary, write_summary
from omnissl.research.checkpoints import keep_checkpoint
from omnissl.research.forgetting import PHASES_LOG, phase_probe_records
from omnissl.research.phases import (DEFAULT_REPLAY_SIZE, PhasedBatchSampler, PhaseSplit, build_phases,
                                     parse_phases, phase_lr, probe_plan, split_phases)
from omnissl.research.select import restrict_to_subset


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


@dataclass
class Run:
    """What the loop works with, from :func:`setup`."""

    recipe: Recipe
    out_dir: Path
    dist: Dist
    device: torch.device
    modality: Any
    objective: torch.nn.Module  # the objective itself: make_mask, after_step, encoder, state_dict
    model: torch.nn.Module  # what forward and backward run through: the objective, DDP around it, or FSDP-sharded
    step_fn: Any  # model, compiled when train.compile is set
    masker: Any
    tokens: TokenDataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    sampler: SeededBatchSampler | PhasedBatchSampler  # the global batches
    phase_split: PhaseSplit | None  # data.phases: each phase's train / held-out samples
    phase_probes: dict[int, Any]  # step -> PhaseProbe: probes at the end of each phase
    batches: Iterator[Any]  # this rank's micro-batches
    micro: int  # samples per micro-batch
    accum: int  # micro-batches per global batch
    local_accum: int  # of them on this rank
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    lr_of: Callable[[int], float]  # step -> learning rate (before a group's layer-wise decay)
    start: int
    saved_step: int | None  # the last checkpoint known to exist and be finite
    logger: TrainLogger
    health: "Health"
    info: RunInfo
    hooks: Any


class Health:
    """The first step whose loss or gradient norm was not finite, kept on the device so a step
    needs no host synchronisation; read with :meth:`check` (every step on the CPU, where reading is
    free; on logged steps and before checkpoints on CUDA, where the fused optimiser skips a
    non-finite step on the device)."""

    NONE = 2**62

    def __init__(self, device: torch.device):
        self.first = torch.full((), self.NONE, dtype=torch.int64, device=device)
        self.values = torch.zeros(2, device=device)  # loss, gradient norm at that step

    def update(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """Record step ``step`` (1-based); returns whether it was not finite (a device bool)."""
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        first = bad & (self.first == self.NONE)
        self.values = torch.where(first, torch.stack([loss.float(), grad_norm.float()]), self.values)
        self.first = torch.where(first, torch.full_like(self.first, step), self.first)
        return bad

    def check(self, run: Run) -> None:
        """Raise when some step on some rank was not finite, naming the first (all ranks call it)."""
        first = int(all_reduce(self.first.clone(), "min"))
        if first == self.NONE:
            return
        loss, norm = (float(v) for v in self.values.cpu())
        if int(self.first) != first:
            what = "the loss or the gradient norm became non-finite on another process"
        elif not math.isfinite(loss):
            what = f"the loss became {loss}"
        else:
            what = f"the gradient norm became {norm} (loss {loss:.4g})"
        raise TrainingError(
            f"{what} at step {first}; that step was not applied and nothing after it was saved. Lower optim.lr "
            f"(or optim.base_lr), raise optim.warmup_steps, lower train.clip_grad or set train.precision=fp32; "
            f"{_last_good(run.out_dir / 'checkpoints', run.saved_step)}")


def _grad_norm(params: list[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    """The gradients' total norm, clipped to ``clip`` when given."""
    if clip:
        return full_value(torch.nn.utils.clip_grad_norm_(params, clip))
    return full_value(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))


def train(recipe: Recipe, registry: Registry, out_dir: Path, resume: bool = False, overwrite: bool = False,
          allow_recipe_change: bool = False, dataset: Any = None) -> dict[str, Any]:
    """Pre-train as the recipe says, writing the run folder ``out_dir``; returns the final metrics.

    ``resume`` continues the run in ``out_dir`` from its last checkpoint (``allow_recipe_change``
    lets the recipe differ from the run's); ``overwrite`` starts over a folder that holds a run.
    ``dataset``: the recipe's data set when the caller has built it already (``omnissl finetune``
    trains several runs on one data set), so it is not built again. Under ``torchrun`` every
    process calls it; each trains its slice of every global batch (docs/distributed.md).
    """
    t = recipe.train
    dist, device = distributed.setup(t.strategy, pick_device(t.device))
    try:
        run = setup(recipe, registry, out_dir, dist, device, resume, overwrite, allow_recipe_change, dataset)
        for step in range(run.start, t.steps):
            # The learning rate of this step: warm-up then cosine (once, or in each phase with
            # data.phase_schedule: restart), times a group's layer-wise decay.
            lr = run.lr_of(step)
            for group in run.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

            # Forward and backward over this rank's micro-batches, clip, optimiser step.
            grad_norm = train_step(run, step)
            done = step + 1

            # Validate and log on a schedule; every rank takes part (sums are over all of them).
            val_loss = validate(run, done) if (t.val_every and done % t.val_every == 0) or done == t.steps else None
            if done % t.log_every == 0 or val_loss is not None:
                run.health.check(run)  # a non-finite step stops the run here, naming the step
                run.logger.log(done, lr, grad_norm, val_loss)
            run.logger.advance()

            # Checkpoint: the last good state, written atomically.
            if done % t.ckpt_every == 0 or done == t.steps:
                save(run, done)
            # Kept checkpoints (train.keep_checkpoints): the encoder at this step, for per-checkpoint probes.
            if t.keep_checkpoints and done % t.keep_checkpoints == 0:
                keep(run, done)
            # data.phases: at the end of each phase, probe every phase so far (forgetting).
            if done in run.phase_probes and recipe.probe.enabled:
                probe_phases(run, done)
        return finish(run)
    finally:
        dist.close()


def setup(recipe: Recipe, registry: Registry, out_dir: Path, dist: Dist, device: torch.device, resume: bool,
          overwrite: bool, allow_recipe_change: bool, dataset: Any) -> Run:
    """Check the run folder and the resume, build the components, the split, the data order, the
    optimiser, and load the checkpoint; then (main process) start writing the run folder."""
    t, cfg = recipe.train, recipe.optim
    ckpt_dir = out_dir / "checkpoints"
    check_start(out_dir, resume, overwrite)
    start, state, changes = 0, None, None
    if resume:  # the cheap check first: a different recipe is refused before anything is built
        state = load_checkpoint(ckpt_dir / LAST)
        start = int(state["step"])
        changes = check_resume_recipe(out_dir, recipe, registry, start, allow_recipe_change)
        sharded = "sharded" in state
        if sharded != (dist.strategy == "fsdp"):
            raise TrainingError(f"{ckpt_dir / LAST} was written by a run {'with' if sharded else 'without'} "
                                f"FSDP; resume it with train.strategy={'fsdp' if sharded else 'auto'}")
    torch.manual_seed(t.seed)  # model initialisation, the same on every rank
    phases = parse_phases(recipe.raw["data"])
    if phases and recipe.probe.enabled and dist.strategy == "fsdp":  # the probes run the whole encoder in one process
        raise TrainingError("data.phases probes every phase at the end of each phase with the whole encoder, which "
                            "train.strategy=fsdp shards over the processes; train with train.strategy=auto (DDP) "
                            "or set probe.enabled=false")
    if phases and dataset is None:  # the phases' data sets, concatenated
        dataset = build_phases(phases, registry, recipe.source)
    parts = build_all(recipe, registry, dataset)
    modality, objective, masker = parts.modality, parts.objective.to(device), parts.masker

    # The global batch (train.batch_size) is cut into micro-batches shared out over the ranks.
    micro = t.micro_batch_size or t.batch_size // dist.world
    accum = t.batch_size // micro if micro else 0
    if micro == 0 or accum * micro != t.batch_size or accum % dist.world:
        raise TrainingError(f"train.batch_size={t.batch_size} (the global batch) must split into micro-batches of "
                            f"train.micro_batch_size={t.micro_batch_size or micro} shared evenly by {dist.world} "
                            f"processes; make train.batch_size a multiple of micro_batch_size x processes")
    val_fraction, mode = recipe.get("data", "val_fraction", 0.1), recipe.get("data", "split", "auto")
    phase_split = None
    if phases:  # each phase split on its own; validation over every phase's held-out samples
        phase_split = split_phases(parts.dataset, val_fraction, split_seed(recipe), mode)
        train_idx, val_idx = np.concatenate(phase_split.train), phase_split.validation_indices()
        split = phase_split.as_split(train_idx, val_idx)
    else:
        split = held_out_split(parts.dataset, val_fraction, split_seed(recipe), mode)
        train_idx, val_idx = split.train, split.held_out
    subset = recipe.get("data", "subset")
    if subset is not None:  # data.subset: the listed training samples only; validation unchanged
        train_idx, subset_info = restrict_to_subset(parts.dataset, train_idx, subset)
        split = HeldOutSplit(train_idx, split.held_out, {**split.info, **subset_info, "train": int(len(train_idx))})
    if phases and getattr(objective, "uses_labels", False):
        raise TrainingError("data.phases is for pre-training; fine-tune on one data set (remove data.phases)")
    tokens = TokenDataset(parts.dataset, modality)
    if getattr(objective, "uses_labels", False):  # fine-tuning: labelled samples, a fraction of them
        train_idx, val_idx = supervised_indices(tokens, split, objective.label_fraction, t.seed)
        split.info.update(labelled_train=int(len(train_idx)), labelled_held_out=int(len(val_idx)),
                          label_fraction=objective.label_fraction)
    model = distributed.wrap(objective, dist, device, t.precision)
    lr_peak = peak_lr(cfg, t.batch_size)
    optimizer = make_optimizer(objective, cfg, lr_peak, device)
    if state is not None and "sharded" in state:
        load_sharded(objective, optimizer, ckpt_dir / state["sharded"], state["model"])
    elif state is not None:
        load_training_state(objective, optimizer, state, ckpt_dir / LAST)

    # Everything is checked on every rank: from here on the main process writes the run folder.
    distributed.barrier(dist)
    if dist.is_main:
        if overwrite:
            remove_run(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_recipe(out_dir, recipe, registry, start, changes)
        summary = data_summary(parts.dataset, recipe.raw["data"]["name"], split.info)
        write_summary(summary, out_dir / DATA_SUMMARY)
        print(format_summary(summary), file=sys.stderr, flush=True)
    info = RunInfo(out_dir, recipe.raw, start, t.steps, parts.dataset)
    hooks = registry.manager.hook
    logger = TrainLogger(out_dir, dist, device, start, t.steps, resume, hooks, info)
    if state is not None and "log_window" in state:
        logger.window.load_state_dict(state["log_window"], dist.is_main)
    if dist.is_main:
        hooks.omnissl_train_start(run=info)

    def schedule(step: int, total: int) -> float:
        return lr_at(step, total, lr_peak, recipe.optim)

    lr_of = phase_lr(phases, recipe.get("data", "phase_schedule"), schedule, t.steps)
    if phases:
        sampler = PhasedBatchSampler(phases, phase_split.train, t.batch_size, t.seed,
                                     recipe.get("data", "replay") or 0.0,
                                     recipe.get("data", "replay_size") or DEFAULT_REPLAY_SIZE)
        if state is not None and "replay" in state:
            sampler.load_state_dict(state["replay"])  # the reservoir of the checkpoint's phase
    else:
        sampler = SeededBatchSampler(train_idx, t.batch_size, t.seed)
    local = RankBatchSampler(sampler, micro, dist.rank, dist.world, start=start)
    workers = int(recipe.get("data", "num_workers", 0))
    batches = iter(make_loader(tokens, local, workers, pin_memory=device.type == "cuda"))
    objective.train()
    return Run(recipe=recipe, out_dir=out_dir, dist=dist, device=device, modality=modality, objective=objective,
               model=model, step_fn=torch.compile(model) if t.compile else model, masker=masker, tokens=tokens,
               train_idx=train_idx, val_idx=val_idx, sampler=sampler, phase_split=phase_split,
               phase_probes={e.step: e for e in probe_plan(phases)}, batches=batches, micro=micro, accum=accum,
               local_accum=accum // dist.world, optimizer=optimizer,
               params=[p for p in objective.parameters() if p.requires_grad], lr_of=lr_of, start=start,
               saved_step=start if resume else None, logger=logger, health=Health(device), info=info, hooks=hooks)


def train_step(run: Run, step: int) -> torch.Tensor:
    """One optimiser step over this rank's micro-batches of the global batch of ``step``
    (0-based); returns the gradient norm, on the device.

    Micro-batch k of the global batch draws its mask from (seed, step, k) and its dropout from
    a seed of the same, whichever rank trains it; the gradient all-reduce runs after the last
    micro-batch only. Nothing here waits for the device on CUDA: the losses stay on it, and a
    non-finite step is skipped by the fused optimiser and reported when :class:`Health` is read.
    """
    t, device = run.recipe.train, run.device
    loss = torch.zeros((), device=device)  # this rank's share of the step's loss
    terms: dict[str, torch.Tensor] = {}
    samples = 0
    for m in range(run.local_accum):
        k = run.dist.rank * run.local_accum + m  # the micro-batch's place in the global batch
        batch = run.modality.on_device(next(run.batches).to(device, non_blocking=True))
        if step == run.start and m == 0:  # what the encoder sees, once per run
            validate_tokens(batch, run.tokens.spec, f"{run.modality.name} batch after on_device", "on_device")
        mask = draw_mask(run.objective, run.masker, batch, step_generator(t.seed, 0, step, k, device=device))
        torch.manual_seed(_micro_seed(t.seed, step, k))  # dropout / drop-path of this micro-batch
        with distributed.gradient_sync(run.model, run.dist, sync=m == run.local_accum - 1):
            with autocast_for(t.precision, device):
                out = run.step_fn(batch, mask)
            (out.loss / run.local_accum).backward()
        loss += out.loss.detach() / run.accum
        for key, value in out.metrics.items():
            if key != "loss":
                terms[key] = terms.get(key, 0.0) + value.detach().float() / run.accum
        samples += batch.batch_size
    grad_norm = _grad_norm(run.params, t.clip_grad)
    # A step whose loss or gradient is not finite is never applied, so never saved.
    bad = run.health.update(step + 1, loss, grad_norm)
    if device.type == "cuda" and run.optimizer.defaults.get("fused"):
        run.optimizer.found_inf = bad.float()  # the fused AdamW leaves parameters and state as they were
    else:
        run.health.check(run)  # reading is free off the GPU (or the optimiser cannot skip): stop before the step
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if hasattr(run.objective, "after_step"):  # an EMA teacher follows the student here
        run.objective.after_step(step, t.steps)
    run.logger.window.add(loss, terms, samples)
    source_of = getattr(run.tokens.dataset, "source_of", None)
    if source_of is not None and run.dist.is_main:  # each source's share of the samples (mixtures)
        run.logger.window.add_sources([source_of(index) for index, _ in run.sampler.batch(step)])
    return grad_norm


@torch.no_grad()
def validate(run: Run, step: int) -> float | None:
    """The held-out loss on fixed batches with fixed masks (comparable across steps and world
    sizes: batches of ``micro_batch_size`` or the global batch). The ranks share the batches out
    and their sums are added; under FSDP every rank runs every batch (a forward is collective)."""
    if len(run.val_idx) == 0:
        return None
    t, device, dist = run.recipe.train, run.device, run.dist
    batches = fixed_batches(run.val_idx, t.micro_batch_size or t.batch_size)[: t.val_batches]
    shared = dist.strategy != "fsdp"
    mine = list(range(dist.rank, len(batches), dist.world)) if shared else list(range(len(batches)))
    total = torch.zeros(2, dtype=torch.float64, device=device)  # sum of loss x samples, samples
    run.model.eval()
    for i, batch in zip(mine, make_loader(run.tokens, [batches[i] for i in mine], 0)):
        batch = run.modality.on_device(batch.to(device))
        mask = draw_mask(run.objective, run.masker, batch, step_generator(t.seed, 1, i, device=device))
        with autocast_for(t.precision, device):
            loss = run.model(batch, mask).loss
        total += torch.stack([loss.double() * batch.batch_size, torch.tensor(float(batch.batch_size),
                                                                             dtype=torch.float64, device=device)])
    run.model.train()
    if shared:
        all_reduce(total)
    return float(total[0] / total[1])


def keep(run: Run, step: int) -> None:
    """``checkpoints/step-<step>.pt``: the encoder alone (main process; every rank gathers under FSDP)."""
    run.health.check(run)  # a non-finite step is reported, not kept
    if run.dist.strategy == "fsdp":
        full = full_model_state(run.objective)  # collective
        weights = {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")}
    else:
        weights = run.objective.encoder.state_dict()
    if run.dist.is_main:
        keep_checkpoint(weights, step, run.out_dir / "checkpoints", run.recipe.train.keep_checkpoints)


def probe_phases(run: Run, step: int) -> None:
    """Probe the encoder on each phase so far (main process), one line per phase in phases.jsonl."""
    from omnissl.eval.probe import append_json_line  # here: eval.probe imports omnissl.train

    if run.dist.is_main:
        pool = run.recipe.probe.pool or run.modality.readout
        records = phase_probe_records(run.objective.encoder, run.tokens, run.phase_split, run.phase_probes[step],
                                      run.recipe.probe, run.device, pool)
        for record in records:
            append_json_line(run.out_dir / PHASES_LOG, record)
        run.objective.train()  # encode() left the encoder in eval mode
    distributed.barrier(run.dist)


def save(run: Run, step: int) -> None:
    """Checkpoint the run at ``step`` (every rank calls it): ``last.pt`` by the main process, with
    the sharded folder every rank writes under FSDP. Never a non-finite state."""
    ckpt_dir = run.out_dir / "checkpoints"
    run.health.check(run)
    run.logger.window.reduce()  # the main process's checkpoint carries every rank's share of the window
    state: dict[str, Any] = {"step": step, "log_window": run.logger.window.state_dict()}
    if isinstance(run.sampler, PhasedBatchSampler):
        state["replay"] = run.sampler.state_dict(step)  # the reservoir of the phase that trains step `step`
    try:
        if run.dist.strategy == "fsdp":
            state["sharded"] = save_sharded(run.objective, run.optimizer, ckpt_dir, step)
            state["model"] = full_model_state(run.objective)  # consolidated, for probes and exports
            distributed.barrier(run.dist)  # every rank's shards are on disk before last.pt names them
        else:
            state.update(model=run.objective.state_dict(), optimizer=run.optimizer.state_dict())
        if run.dist.is_main:
            path = save_checkpoint(state, ckpt_dir / LAST)
            if "sharded" in state:
                remove_sharded(ckpt_dir, keep=state["sharded"])
    except TrainingError as exc:
        raise TrainingError(f"at step {step}: {exc}; {_last_good(ckpt_dir, run.saved_step)}") from None
    run.saved_step = step
    if run.dist.is_main:
        run.hooks.omnissl_checkpoint(run=run.info, step=step, path=path)


def finish(run: Run) -> dict[str, Any]:
    """The encoder's weights, the plots and the end hook (main process); returns the last metrics."""
    t, out_dir = run.recipe.train, run.out_dir
    run.logger.close()
    if run.dist.strategy == "fsdp":
        full = full_model_state(run.objective)
        weights = {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")}
    else:
        weights = run.objective.encoder.state_dict()
    if run.dist.is_main:
        save_weights(weights, out_dir / "checkpoints" / ENCODER, {"step": str(t.steps)})
        from omnissl.viz import plot_loss_curve, plot_reconstructions
        plot_loss_curve(out_dir / METRICS, out_dir / "loss_curve.png")
        # (FSDP's parameters are shards: the reconstruction plot needs the whole model on one process.)
        if run.recipe.viz.enabled and hasattr(run.objective, "reconstruct") and run.dist.strategy != "fsdp":
            shown = run.val_idx if len(run.val_idx) else run.train_idx  # held-out samples, else training ones
            plot_reconstructions(run.objective, run.modality, run.masker, run.tokens, shown, run.recipe,
                                 run.device, out_dir / "reconstruction.png")
        run.hooks.omnissl_train_end(run=run.info, metrics=run.logger.last)
    distributed.barrier(run.dist)  # the others wait for the run folder to be complete
    return run.logger.last


def _micro_seed(seed: int, step: int, k: int) -> int:
    """The torch seed of micro-batch ``k`` of step ``step`` (dropout, drop-path)."""
    return int(np.random.SeedSequence([seed, 3, step, k]).generate_state(1, dtype=np.uint64)[0] >> 1)


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
