"""Several processes, one run: PyTorch's own distributed engine, as ``torchrun`` starts it.

``torchrun --nproc-per-node N -m omnissl train RECIPE --out DIR`` (or ``omnissl train RECIPE
--nproc N``, which starts the same elastic launcher) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and picks the
strategy (``train.strategy``): ``single`` (one process), ``ddp`` (DistributedDataParallel: every
rank holds the whole objective, gradients are averaged) or ``fsdp`` (FSDP2's ``fully_shard`` per
transformer block: parameters, gradients and optimiser state are sharded across ranks).
``auto`` is DDP when there is more than one process.

Only rank 0 (``is_main``) writes the run folder and calls the run-time hooks; every rank
trains its slice of the global batch (:mod:`omnissl.train.data`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as td
from torch import nn

from omnissl.errors import OmnisslError, TrainingError

STRATEGIES = ("auto", "single", "ddp", "fsdp")


@dataclass
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: str = "single"  # single | ddp | fsdp (auto resolved)
    owns_group: bool = False  # this run started the process group, so it ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether collectives run (a process group is up)."""
        return td.is_available() and td.is_initialized()

    def close(self) -> None:
        if self.owns_group and self.active:
            td.destroy_process_group()
            self.owns_group = False


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) in a plain process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def process_device(device: torch.device, local_rank: int) -> torch.device:
    """Each process of a node takes its own GPU (``LOCAL_RANK``); CPU stays CPU."""
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(f"process {local_rank} of this node has no GPU: {torch.cuda.device_count()} visible; "
                                f"start at most that many processes per node (--nproc / --nproc-per-node)")
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(strategy: str, device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun prepared (when there is one) and resolve ``train.strategy``."""
    rank, world, local_rank = world_from_env()
    if strategy not in STRATEGIES:
        raise TrainingError(f"train.strategy={strategy!r}; pick one of {', '.join(STRATEGIES)}")
    if strategy == "single" and world > 1:
        raise TrainingError(f"train.strategy=single, but {world} processes were started; set train.strategy=auto "
                            f"(DDP), ddp or fsdp, or start one process")
    device = process_device(device, local_rank)
    resolved = "ddp" if strategy == "auto" else strategy
    if world == 1 and resolved == "ddp":
        resolved = "single"  # one replica: DDP would only add a wrapper
    dist = Dist(rank, world, local_rank, resolved)
    if resolved == "single" or td.is_initialized():
        return dist, device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world == 1:  # FSDP in one process (a check, or one GPU): a group of one, no network
        td.init_process_group(backend, store=td.HashStore(), rank=0, world_size=1)
    else:
        td.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    dist.owns_group = True
    return dist, device


def transformer_blocks(objective: nn.Module) -> list[nn.Module]:
    """The blocks of the objective's encoder (the items of its ``ModuleList``s that hold
    parameters): FSDP's unit of sharding, so one block is gathered at a time. The rest (decoder,
    heads, an EMA teacher) forms one unit gathered for the whole forward: decoders reach into
    their last block's layers (``forward_at``), which a block of its own would not allow."""
    encoder = getattr(objective, "encoder", objective)
    return [block for module in encoder.modules() if isinstance(module, nn.ModuleList)
            for block in module if any(True for _ in block.parameters())]


def wrap(objective: nn.Module, dist: Dist, device: torch.device, precision: str) -> nn.Module:
    """The module the loop runs forward and backward through: the objective itself, DDP
    around it, or the objective sharded in place by FSDP2."""
    if dist.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # Buffers are not broadcast each forward: every rank starts from the same seed, and a
        # broadcast of large buffers (L2-SP's reference weights) would cost a collective per step.
        # Some trainable parameters get no gradient in a step (the encoder's mask token when
        # MAE runs it on visible tokens only): DDP must look for them, or it waits for them forever.
        return DistributedDataParallel(objective, device_ids=None, forward_sync_buffers=False,
                                       find_unused_parameters=True)
    if dist.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        policy = MixedPrecisionPolicy()
        if device.type == "cuda" and precision != "fp32":  # bf16 compute and gathers, fp32 reduction
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        # The loop never changes an objective's outputs in place, which is what this warns of.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
        for block in transformer_blocks(objective):
            fully_shard(block, mp_policy=policy)
        fully_shard(objective, mp_policy=policy)
        # An objective that draws its masks from its own model (iBOT's AttMask asks the EMA teacher's
        # attention) does so outside forward: the call gathers the parameters as forward does.
        if callable(getattr(objective, "make_mask", None)):
            register_fsdp_forward_method(objective, "make_mask")
        return objective
    return objective


@contextlib.contextmanager
def gradient_sync(model: nn.Module, dist: Dist, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of a step (accumulation)."""
    if dist.strategy == "ddp" and not sync:
        with model.no_sync():
            yield
        return
    if dist.strategy == "fsdp":
        model.set_requires_gradient_sync(sync)
    yield


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over all ranks (sum, min or max), in place; itself in one process."""
    if td.is_available() and td.is_initialized() and td.get_world_size() > 1:
        td.all_reduce(tensor, op={"sum": td.ReduceOp.SUM, "min": td.ReduceOp.MIN, "max": td.ReduceOp.MAX}[op])
    return tensor


def barrier(dist: Dist) -> None:
    if dist.active and dist.world > 1:
        td.barrier()


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a sharded one (FSDP's gradient norm is a DTensor)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def launch(argv: list[str], nproc: int) -> int:
    """Run ``omnissl ARGV`` in ``nproc`` processes on this machine through torch's elastic
    launcher (``torchrun --standalone --nproc-per-node NPROC -m omnissl ARGV``); the exit code
    of the first process that failed, else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise OmnisslError(f"--nproc must be at least 1, got {nproc}")
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "omnissl", *argv])
    try:
        run(args)
    except ChildFailedError as exc:  # each process printed its own error already
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal
            print(f"omnissl: process {rank} was killed by signal {-code}", file=sys.stderr)
            return 128 - code
        return code or 1
    return 0
