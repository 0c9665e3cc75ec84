"""The latent objectives resume exactly after SIGKILL: a run killed mid-way and continued with
``--resume`` logs the uninterrupted run's metrics, bit for bit.

Each objective keeps state beyond the encoder and the optimiser (I-JEPA, data2vec 2.0 and iBOT an
EMA teacher; iBOT its centres and its temperature clock too), and draws its masks and views from
the step's generator; a resume that lost any of it, or drew different views, would show in the
losses. The killer plugin and the record reader are tests/test_ema.py's. The uninterrupted run
and the resume train in this process; the killed run has a process of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_ema import KILLER, records

from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train import train as train_here

# A tiny encoder and each objective's heads shrunk, on the digits demos' recipes; the kill
# comes at step 7, after the checkpoint of step 6 and before the validation of step 8.
TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "train.batch_size=16", "optim.warmup_steps=2",
        "train.log_every=1", "train.steps=9", "train.ckpt_every=3", "train.val_every=4", "probe.enabled=false",
        "viz.enabled=false"]
OBJECTIVES = {
    "ijepa": ["objective.pred_dim=16", "objective.pred_depth=1", "objective.pred_heads=2"],
    "data2vec2": ["objective.masks_per_sample=2", "objective.top_k=2", "objective.decoder_dim=16",
                  "objective.decoder_depth=1", "objective.decoder_heads=2"],
    "ibot": ["objective.out_dim=64", "objective.hidden_dim=32", "objective.bottleneck_dim=16",
             "objective.local_views=2", "objective.teacher_temp_warmup=0.5", "objective.warmup_teacher_temp=0.02"],
}
KEYS = {"ijepa": "teacher.module.", "data2vec2": "teacher.module.", "ibot": "center"}


def train(out: Path, plugins: Path, objective: str, kill_at: int) -> subprocess.CompletedProcess:
    """The run through the CLI, killed with SIGKILL as step ``kill_at`` is logged."""
    env = dict(os.environ, OMNISSL_PLUGINS="killer", KILL_AT_STEP=str(kill_at))
    env["PYTHONPATH"] = f"{plugins}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "omnissl", "train", f"image/{objective}-digits", *TINY, *OBJECTIVES[objective],
               "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def train_in_process(out: Path, objective: str, resume: bool = False) -> None:
    registry = get_registry()
    recipe = load_recipe(f"image/{objective}-digits", [*TINY, *OBJECTIVES[objective]], registry)
    train_here(recipe, registry, out, resume=resume)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_killed_latent_run_resumes_exactly(tmp_path, objective):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(textwrap.dedent(KILLER))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train_in_process(straight, objective)
    result = train(killed, plugins, objective, kill_at=7)
    assert result.returncode == -9, result.stderr
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6
    assert any(key.startswith(KEYS[objective]) for key in state["model"])  # the state that must survive
    train_in_process(killed, objective, resume=True)
    expected = records(straight)
    assert len(expected) == 9 and sum("val_loss" in r for r in expected) == 3  # steps 4, 8 and 9
    assert records(killed) == expected
