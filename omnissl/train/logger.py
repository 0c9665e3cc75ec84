"""What a run reports, in one place: window averages, metrics.jsonl, TensorBoard, the
``omnissl_log`` hook, the progress bar and the ETA line.

Every rank keeps its own :class:`LogWindow` on its device (no synchronisation inside a
step); on a logged step the windows are summed over the ranks in one all-reduce, and the
main process alone writes and calls the hook.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from omnissl.train.distributed import Dist, all_reduce
from omnissl.train.runfolder import METRICS, MetricsLog


class LogWindow:
    """The steps since the last logged one: the sum of their losses and of the objective's
    other metrics (on the device), the samples seen and, for data sets that say where each
    sample comes from (``source_of``), how many samples each source gave. Checkpointed, so a
    resumed run logs the same averages as an uninterrupted one whatever ``ckpt_every`` and
    ``log_every`` are.

    Each rank sums its own share (a micro-batch's loss divided by the micro-batches of the whole
    step), so the sum over ranks is the global batch's.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.steps = 0
        self.loss = torch.zeros((), dtype=self.dtype, device=device)
        self.terms: dict[str, torch.Tensor] = {}
        self.samples = 0
        self.sources: dict[str, int] = {}
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], samples: int) -> None:
        """One step: this rank's share of its loss and metrics (device tensors), its sample count."""
        self.steps += 1
        self.loss += loss
        for key, value in terms.items():
            self.terms[key] = self.terms.get(key, 0.0) + value.to(self.dtype)
        self.samples += samples

    def add_sources(self, names: list[str]) -> None:
        for name in names:
            self.sources[name] = self.sources.get(name, 0) + 1

    def reduce(self) -> None:
        """Sum the windows of all ranks into the main one's (the others are left empty), in one all-reduce."""
        keys = sorted(self.terms)
        packed = torch.stack([self.loss, *(self.terms[k] for k in keys),
                              torch.tensor(float(self.samples), dtype=self.dtype, device=self.device)])
        all_reduce(packed)
        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            packed.zero_()
        self.loss = packed[0].clone()
        self.terms = {k: packed[1 + i].clone() for i, k in enumerate(keys)}
        self.samples = int(packed[-1].item())

    def record(self, step: int, lr: float) -> dict[str, Any]:
        """The window's averages (after :meth:`reduce`)."""
        elapsed = time.perf_counter() - self.started
        record: dict[str, Any] = {"step": step, "loss": float(self.loss) / self.steps, "lr": lr,
                                  "samples_per_s": self.samples / max(elapsed, 1e-9)}
        record.update({key: float(total) / self.steps for key, total in self.terms.items()})
        total = sum(self.sources.values())
        record.update({f"data/share/{name}": count / total for name, count in sorted(self.sources.items())})
        return record

    def state_dict(self) -> dict[str, Any]:
        """The window (after :meth:`reduce`, so the main process's holds every rank's share)."""
        return {"steps": self.steps, "loss": self.loss.detach().cpu(), "samples": self.samples,
                "terms": {k: v.detach().cpu() for k, v in self.terms.items()}, "sources": dict(self.sources)}

    def load_state_dict(self, state: dict[str, Any], main: bool) -> None:
        """A checkpointed window; other ranks than the main one start theirs empty (the main one
        carries the sums of all)."""
        if "losses" in state:  # written before windows were summed on the device
            state = {"steps": len(state["losses"]), "loss": torch.tensor(sum(float(v) for v in state["losses"])),
                     "samples": state["samples"], "terms": state["terms"]}
        self.steps = int(state["steps"])
        if not main:
            return
        self.loss = state["loss"].to(self.device, self.dtype)
        self.samples = int(state["samples"])
        self.terms = {k: v.to(self.device, self.dtype) for k, v in state["terms"].items()}
        self.sources = {str(k): int(v) for k, v in state.get("sources", {}).items()}


class TrainLogger:
    """Owns the run's reporting. Every rank calls :meth:`log` on logged steps (it sums the
    windows over the ranks); only the main process writes ``metrics.jsonl`` and TensorBoard,
    calls the ``omnissl_log`` hook and shows the progress bar or, off a terminal, one line per
    logged step with the ETA."""

    def __init__(self, out_dir: Path, dist: Dist, device: torch.device, start: int, total: int, resume: bool,
                 hooks: Any, run: Any) -> None:
        self.dist, self.device, self.start, self.total = dist, device, start, total
        self.hooks, self.run = hooks, run
        self.window = LogWindow(device)
        self.last: dict[str, Any] = {}
        self.began = time.perf_counter()
        self.metrics = self.writer = self.bar = None
        self.interactive = sys.stderr.isatty()
        if dist.is_main:
            self.metrics = MetricsLog(out_dir / METRICS, keep_until=start if resume else None)
            self.writer = _tensorboard(out_dir)
            # A live bar on a terminal; one plain line per logged step in logs and CI.
            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                            mininterval=1.0, disable=not self.interactive)

    def log(self, step: int, lr: float, grad_norm: torch.Tensor, val_loss: float | None) -> dict[str, Any]:
        """Write the window's averages for ``step`` (all ranks call it) and start a new window."""
        self.window.reduce()
        record = self.window.record(step, lr)
        record["grad_norm"] = float(grad_norm)
        if val_loss is not None:
            record["val_loss"] = val_loss
        self.window = LogWindow(self.device)
        self.last = record
        if not self.dist.is_main:
            return record
        self.metrics.write(record)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    self.writer.add_scalar(key, value, step)
        self.hooks.omnissl_log(run=self.run, step=step, metrics=record)
        shown = {k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "val_loss", "samples_per_s")}
        self.bar.set_postfix(shown)
        if not self.interactive:
            eta = (time.perf_counter() - self.began) / (step - self.start) * (self.total - step)
            print(f"step {step}/{self.total}  " + "  ".join(f"{k} {v}" for k, v in shown.items())
                  + f"  eta {eta:.0f}s", file=sys.stderr, flush=True)
        return record

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out_dir: Path) -> Any:
    """A TensorBoard writer when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
