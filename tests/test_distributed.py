"""Several processes on the CPU (gloo): the global batch, the losses and exact resume do not
depend on the number of processes (docs/distributed.md).

Two-process runs go through ``omnissl train --nproc 2`` (torch's elastic launcher), as a user
starts them; one-process runs are in-process. Float tolerance between world sizes: relative
1e-4 on the logged losses over 8 steps. Within one world size, resume is exact (equal floats).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train import train
from omnissl.train.data import RankBatchSampler, SeededBatchSampler

ARGS = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=32",
        "train.micro_batch_size=8", "optim.warmup_steps=2", "train.log_every=1", "train.steps=8",
        "train.ckpt_every=4", "train.val_every=4", "train.val_batches=2", "probe.enabled=false", "viz.enabled=false",
        "modality.crop_scale=[0.5, 1.0]"]
RTOL = 1e-4  # across world sizes: the gradient all-reduce adds in another order
MAE = "image/mae-digits"
# FSDP trains data2vec 2.0, whose EMA teacher is sharded, gathered and checkpointed with the student.
D2V, D2V_ARGS = "image/data2vec2-digits", ("objective.masks_per_sample=1", "objective.top_k=2")

STALL = """
    import os
    import time
    from pathlib import Path

    from omnissl import hookimpl

    @hookimpl
    def omnissl_log(step):
        if step == int(os.environ["STALL_AT_STEP"]):  # the test kills every process now
            Path(os.environ["STALL_MARKER"]).touch()
            time.sleep(600)
"""


def command(out: Path, *extra: str, resume: bool = False, recipe: str = MAE) -> list[str]:
    return [sys.executable, "-m", "omnissl", "train", recipe, *ARGS, *extra, "--out", str(out),
            "--nproc", "2"] + (["--resume"] if resume else [])


def launch(out: Path, *extra: str, resume: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMNISSL_PLUGINS="")
    return subprocess.run(command(out, *extra, resume=resume), capture_output=True, text=True, env=env, timeout=600)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the launcher and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def launch_and_kill_all(out: Path, step: int, plugin_dir: Path, *extra: str, recipe: str = MAE) -> str:
    """A 2-process run whose main process stalls when it logs ``step``; then SIGKILL to the launcher
    and every worker at once, as a pre-empted job. Returns the run's stderr."""
    marker = out.parent / "stalled"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMNISSL_PLUGINS="stall", STALL_AT_STEP=str(step),
               STALL_MARKER=str(marker), PYTHONPATH=f"{plugin_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with open(out.parent / "stderr.txt", "w") as err:
        process = subprocess.Popen(command(out, *extra, recipe=recipe), stdout=subprocess.DEVNULL, stderr=err,
                                   env=env)
        deadline = time.monotonic() + 600
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = descendants(process.pid)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    assert marker.exists() and len(pids) >= 3, (out.parent / "stderr.txt").read_text()[-3000:]
    return (out.parent / "stderr.txt").read_text()


def in_process(out: Path, *extra: str, resume: bool = False, allow_recipe_change: bool = False,
               recipe: str = MAE, args: list[str] = ARGS) -> None:
    registry = get_registry()
    train(load_recipe(recipe, [*args, *extra], registry), registry, out, resume=resume,
          allow_recipe_change=allow_recipe_change)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(rows: list[dict]) -> list[tuple[int, float, float]]:
    return [(r["step"], r["loss"], r.get("val_loss", 0.0)) for r in rows]


def close(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose([x[1:] for x in losses(a)], [x[1:] for x in losses(b)], rtol=RTOL, atol=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-process DDP run killed with SIGKILL at step 6 (checkpoint at 4), resumed with 2
    processes; a copy of its step-4 checkpoint resumed with 1 process; a 1-process run."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "plugins").mkdir()
    (root / "plugins" / "stall.py").write_text(textwrap.dedent(STALL))
    killed = root / "killed"
    stderr = launch_and_kill_all(killed, 6, root / "plugins")
    before_kill = records(killed)  # steps 1-6 of the uninterrupted 2-process run
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    shutil.copytree(killed, root / "one")
    resumed = launch(killed, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    in_process(root / "one", resume=True)
    in_process(root / "single")
    return {"before_kill": before_kill, "two": records(killed), "resumed_with_one": records(root / "one"),
            "single": records(root / "single"), "stderr": stderr + resumed.stderr, "dir": killed}


def test_two_processes_log_the_losses_of_one(runs):
    close(runs["two"], runs["single"])
    assert [r["step"] for r in runs["two"] if "val_loss" in r] == [4, 8]
    assert runs["two"][0]["loss"] != runs["two"][1]["loss"]
    assert runs["stderr"].count("split: ") == 2  # the data summary: once per run, by the main process only
    assert (runs["dir"] / "checkpoints" / "encoder.safetensors").is_file()


def test_sigkill_of_every_process_then_resume_is_exact(runs):
    """The resumed 2-process run recomputes steps 5 and 6 exactly as the killed one did."""
    assert losses(runs["two"][:6]) == losses(runs["before_kill"])
    assert [r["step"] for r in runs["two"]] == list(range(1, 9))


def test_resumed_with_one_process_continues_the_same_data_order(runs):
    close(runs["resumed_with_one"], runs["two"])


def test_global_batch_is_the_same_whatever_the_world_size():
    sampler = SeededBatchSampler(range(100), 12, seed=3)
    for world, micro in ((1, 12), (2, 6), (3, 2), (6, 2)):
        shards = [iter(RankBatchSampler(sampler, micro, rank, world, start=5)) for rank in range(world)]
        for step in (5, 6, 7, 8, 9):  # across the epoch boundary at step 8
            per_rank = 12 // micro // world
            got = [key for shard in shards for _ in range(per_rank) for key in next(shard)]
            assert got == sampler.batch(step), (world, step)


def test_fsdp_two_processes_killed_then_resumed_with_one(tmp_path):
    """FSDP2 (fully_shard over gloo) of data2vec 2.0 logs the single-process losses; after SIGKILL
    of every process its sharded checkpoint, the EMA teacher's shards included, resumes with one
    process (DCP re-shards) and continues the single-process run; probes read the consolidated
    weights."""
    from torch.distributed.checkpoint import FileSystemReader

    from omnissl.eval.run import run_features

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "stall.py").write_text(textwrap.dedent(STALL))
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    in_process(single, *D2V_ARGS, recipe=D2V)
    launch_and_kill_all(fsdp, 6, tmp_path / "plugins", *D2V_ARGS, "train.strategy=fsdp", recipe=D2V)
    close(records(fsdp), records(single)[:6])
    assert sorted(p.name for p in (fsdp / "checkpoints").glob("sharded-*")) == ["sharded-00000004"]
    sharded = FileSystemReader(str(fsdp / "checkpoints" / "sharded-00000004")).read_metadata().state_dict_metadata
    consolidated = torch.load(fsdp / "checkpoints" / "last.pt", weights_only=True)["model"]
    teacher = {k for k in consolidated if k.startswith("teacher.module.")}
    assert teacher and {f"model.{k}" for k in teacher} <= set(sharded)  # the teacher, whole and in shards
    in_process(fsdp, *D2V_ARGS, "train.strategy=fsdp", resume=True, recipe=D2V)  # one process
    assert sorted(p.name for p in (fsdp / "checkpoints").glob("sharded-*")) == ["sharded-00000008"]
    close(records(fsdp), records(single))
    assert np.isfinite(run_features(fsdp, batch_size=512)).all()


def test_fsdp_gathers_the_teacher_that_draws_attention_masks(tmp_path):
    """iBOT with AttMask asks its EMA teacher's attention for each mask, outside forward: under FSDP
    (one process, a group of one: the parameters are still sharded tensors) that call gathers the
    parameters too, and the run logs the unsharded run's losses."""
    args = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.out_dim=64", "objective.hidden_dim=32",
            "objective.bottleneck_dim=16", "objective.local_views=2", "masker.name=attention", "train.batch_size=16",
            "optim.warmup_steps=2", "train.log_every=1", "train.steps=2", "train.ckpt_every=2", "train.val_every=2",
            "train.val_batches=1", "probe.enabled=false", "viz.enabled=false"]
    for strategy in ("single", "fsdp"):
        in_process(tmp_path / strategy, f"train.strategy={strategy}", recipe="image/ibot-digits", args=args)
    close(records(tmp_path / "fsdp"), records(tmp_path / "single"))


def test_strategy_is_checked():
    from omnissl.errors import RecipeError

    with pytest.raises(RecipeError, match="train.strategy"):
        load_recipe("image/mae-digits", [*ARGS, "train.strategy=zero3"], get_registry())
