"""Checkpoints that are atomic, verified and finite.

- **Atomic**: written to a temporary file, fsynced and renamed over the old one, so a run
  killed at any moment leaves either the previous checkpoint or the new one. A write that
  fails (a full disk) removes its temporary file and says the previous checkpoint is intact.
- **Verified**: each checkpoint carries a SHA-256 digest of its tensors and values, computed
  before writing and checked on load, so flipped bytes on disk are found, not trained on
  (PyTorch's own format does not check the bytes of tensors).
- **Finite**: a state holding NaN or infinity is never written, and never loaded.
- **No code**: loading never unpickles objects (``weights_only=True``); the weights-only
  files (``encoder.safetensors``) use safetensors, which has no pickle at all.
"""

from __future__ import annotations

import errno
import hashlib
import pickle
from pathlib import Path
from typing import Any, Callable

import torch

from omnissl.errors import TrainingError

LAST = "last.pt"
ENCODER = "encoder.safetensors"
DIGEST_KEY = "sha256"


def _walk(value: Any, name: str = "") -> Any:
    """(name, leaf) for every leaf of nested dicts / lists / tuples, in a fixed order."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _walk(value[key], f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{name}[{i}]")
    else:
        yield name, value


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over every tensor's dtype, shape and bytes and every other value's repr."""
    digest = hashlib.sha256()
    for name, leaf in _walk({k: v for k, v in state.items() if k != DIGEST_KEY}):
        digest.update(name.encode())
        if isinstance(leaf, torch.Tensor):
            data = leaf.detach().cpu().contiguous()
            digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
            if data.numel():
                digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
        else:
            digest.update(repr(leaf).encode())
    return digest.hexdigest()


def first_non_finite(state: Any) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or infinity, if any."""
    for name, leaf in _walk(state):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
            return name
    return None


def write_text_atomic(path: Path, text: str, what: str = "file") -> Path:
    """Write a run-folder text file (recipe, history, metrics, data.json, probe.json) atomically."""
    return write_atomic(path, lambda handle: handle.write(text.encode()), what)


def write_atomic(path: Path, write: Callable[[Any], None], what: str) -> Path:
    """Write ``path`` atomically through :func:`omnissl.cache.atomic_file` (a uniquely named
    temporary sibling, fsync, rename, fsync of the folder); a failed write is a
    :class:`TrainingError` that says what of the run is intact and how to continue."""
    from omnissl.cache import WriteError, atomic_file

    try:
        with atomic_file(path, what) as handle:
            write(handle)
    except WriteError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the previous {what} at {path} is intact" if path.exists() else f"no earlier {what} exists"
            raise TrainingError(f"no space left on the disk of {path.parent} while writing {path}; {kept}. "
                                f"Free some space, then continue with --resume") from exc
        raise TrainingError(f"cannot write {path}: {cause.strerror or cause}") from exc
    return path


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` atomically with its digest; refuse a state holding NaN or infinity."""
    bad = first_non_finite(state)
    if bad is not None:
        raise TrainingError(f"refusing to write {path}: {bad} holds NaN or infinity")
    state = dict(state, **{DIGEST_KEY: state_digest(state)})
    return write_atomic(path, lambda handle: torch.save(state, handle), "checkpoint")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, its digest and finiteness checked."""
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path}; nothing to resume (start without --resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message would suggest weights_only=False, which runs whatever the file holds.
        raise TrainingError(f"{path} is not a checkpoint omnissl trusts: it holds Python objects other than "
                            f"tensors and plain values, and omnissl never runs code from a file. Use a "
                            f"checkpoint written by omnissl train") from None
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} cannot be read ({exc}); it is damaged. Delete it to start "
                            f"over, or restore it from a copy") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise TrainingError(f"{path} is not an omnissl checkpoint (no model state in it)")
    stored = state.pop(DIGEST_KEY, None)
    if stored is not None and stored != state_digest(state):
        raise TrainingError(f"checkpoint {path} is corrupted: its bytes no longer match the SHA-256 digest "
                            f"written with it. Restore it from a copy, or delete it to start over")
    bad = first_non_finite(state)
    if bad is not None:
        raise TrainingError(f"checkpoint {path} holds NaN or infinity in {bad}; it cannot be resumed. "
                            f"Delete it (and start over with --overwrite)")
    return state


def save_weights(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write weights alone as safetensors (no pickle), atomically, with their digest in the header."""
    from safetensors.torch import save

    bad = first_non_finite(tensors)
    if bad is not None:
        raise TrainingError(f"refusing to write {path}: {bad} holds NaN or infinity")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = dict(metadata or {}, **{DIGEST_KEY: state_digest(tensors)})
    data = save(tensors, metadata=header)
    return write_atomic(path, lambda handle: handle.write(data), "weights file")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights written by :func:`save_weights`, their digest checked."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = (handle.metadata() or {}).get(DIGEST_KEY)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise TrainingError(f"{path} cannot be read as safetensors weights ({exc})") from exc
    if stored is not None and stored != state_digest(tensors):
        raise TrainingError(f"{path} is corrupted: its bytes no longer match the SHA-256 digest written with it")
    return tensors


# --- sharded checkpoints (FSDP) -------------------------------------------------------------
# With FSDP no process holds the whole optimiser state: every rank writes its shards through
# torch.distributed.checkpoint into a folder of its own per checkpoint (``sharded-<step>``). The
# folder becomes the run's checkpoint only when ``last.pt``, written atomically by the main
# process after every rank finished, names it; older folders are removed after that. A kill at
# any moment leaves ``last.pt`` naming a complete folder. DCP re-shards on load, so a run may
# resume with another number of processes.

SHARDED = "sharded-{step:08d}"


def _local(value: Any) -> Any:
    return value.to_local() if hasattr(value, "to_local") else value


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ckpt_dir: Path, step: int) -> str:
    """Every rank writes its shards of the model and the optimiser (a collective); returns the
    folder's name, for ``last.pt``. A shard holding NaN or infinity is refused on every rank."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from omnissl.train.distributed import all_reduce

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    bad = first_non_finite({k: _local(v) for k, v in _walk(state)})
    flag = all_reduce(torch.tensor([0.0 if bad is None else 1.0]))
    if float(flag) > 0:
        raise TrainingError(f"refusing to write a sharded checkpoint in {ckpt_dir}: "
                            f"{bad or 'a shard of another process'} holds NaN or infinity")
    name = SHARDED.format(step=step)
    try:
        dcp.save(state, checkpoint_id=str(ckpt_dir / name))
    except OSError as exc:
        raise TrainingError(f"cannot write the sharded checkpoint {ckpt_dir / name}: {exc.strerror or exc}; "
                            f"the previous checkpoint is intact") from exc
    return name


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path,
                 full: dict[str, torch.Tensor]) -> None:
    """Load a folder written by :func:`save_sharded` into the (sharded) model and optimiser, on
    every rank; the number of processes may differ from the run that wrote it. ``full``: the
    consolidated weights in ``last.pt``, against which the model's names and shapes are checked."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in full.items()}
    if mine != theirs:
        differ = sorted(set(mine) ^ set(theirs)) or [k for k in mine if mine[k] != theirs[k]]
        raise TrainingError(f"checkpoint {path} does not fit this recipe's model ({differ[0]} differs); resume "
                            f"with the recipe the run was trained with")
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if not (path / ".metadata").is_file():
        raise TrainingError(f"the sharded checkpoint {path} is missing or incomplete (no .metadata); restore it "
                            f"from a copy, or start over with --overwrite")
    from torch.distributed.checkpoint import DefaultLoadPlanner

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    # Partial: a parameter that never had a gradient (a mask token unused by MAE) has no optimiser
    # state in the checkpoint, while the state asked for here has one for every parameter.
    dcp.load(state, checkpoint_id=str(path), planner=DefaultLoadPlanner(allow_partial_load=True))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the main process's CPU, gathered from the shards (every rank
    calls it; the others get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def remove_sharded(ckpt_dir: Path, keep: str | None) -> None:
    """Remove the sharded folders other than ``keep`` (after ``last.pt`` names it)."""
    import shutil

    for folder in ckpt_dir.glob("sharded-*"):
        if folder.name != keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
