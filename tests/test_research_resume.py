"""Sequential pre-training with replay resumes exactly after SIGKILL.

A run of two phases (the digits twice: the mechanism, not the science) with a quarter of each
phase-2 batch replayed from a reservoir of phase-1 samples is killed twice: at step 8, so it
resumes from the checkpoint of step 6, the phase boundary, and, resumed, at step 10, so it
resumes from step 9, inside phase 2, with the reservoir its checkpoint carries. It must log the
uninterrupted run's losses and end-of-phase probes, and end with its weights, exactly. The
killer plugin and the CLI runner are tests/test_train.py's; the runs that are not killed train in
this process (the same loop the CLI calls, without another interpreter's start-up).
"""

import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from test_train import KILLER, TINY, records, train

from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train import train as train_here

ARGS = ("data.phases=[{steps: 6}, {steps: 6}]", "train.steps=12", "data.replay=0.25", "data.replay_size=64",
        "train.ckpt_every=3", "train.val_every=6", "train.val_batches=1", "probe.max_samples=200",
        "viz.enabled=false")
NO_PROBE = "--no-probe"  # the phases' probes run; the final probe table is not needed


def run_here(out, resume=False, extra=()):
    train_here(load_recipe("image/mae-digits", [*TINY, *ARGS, *extra], get_registry()), get_registry(), out,
               resume=resume)


def phase_lines(out):
    return [json.loads(line) for line in (out / "phases.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("schedule", ["continue", "restart"])
def test_killed_phased_run_with_replay_resumes_exactly(tmp_path, monkeypatch, schedule):
    # restart: the learning-rate schedule runs again in phase 2 (TINY's optim.warmup_steps=2)
    extra = (f"data.phase_schedule={schedule}",)
    straight = tmp_path / "straight"
    run_here(straight, extra=extra)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(textwrap.dedent(KILLER))
    killed = tmp_path / "killed"

    monkeypatch.setenv("KILL_AT_STEP", "8")
    result = train(killed, *ARGS, *extra, NO_PROBE, plugins="killer", plugin_dir=plugins)
    assert result.returncode == -9, result.stderr
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["replay"]["phase"] == 1  # step 6 is phase 2's first
    monkeypatch.setenv("KILL_AT_STEP", "10")
    result = train(killed, *ARGS, *extra, NO_PROBE, plugins="killer", plugin_dir=plugins, resume=True)
    assert result.returncode == -9, result.stderr
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    reservoir = state["replay"]["reservoir"]  # every phase-1 sample trained on, 64 kept
    assert state["step"] == 9 and state["replay"]["phase"] == 1
    assert (reservoir["seen"], len(reservoir["items"])) == (6 * 32, 64)
    run_here(killed, resume=True, extra=extra)

    expected = records(straight)
    lrs = [r["lr"] for r in expected]
    assert (lrs[6] == lrs[0]) == (schedule == "restart")  # phase 2 warms up again, or continues the decay
    assert [r["step"] for r in expected] == list(range(1, 13))
    assert records(killed) == [dict(r, samples_per_s=records(killed)[i]["samples_per_s"])
                               for i, r in enumerate(expected)]
    # at the end of phase 1 (step 6) phase 1 is probed; at the end (12) both phases are
    lines = phase_lines(straight)
    assert [(r["step"], r["after_phase"], r["phase"]) for r in lines] == [(6, 0, 0), (12, 1, 0), (12, 1, 1)]
    assert all(r["metric"] == "accuracy" and 0 <= r["linear"] <= 1 and r["num_test"] > 0 for r in lines)
    assert phase_lines(killed) == lines  # written once each: no probe fell between a checkpoint and a kill
    weights = [load_file(out / "checkpoints" / "encoder.safetensors") for out in (straight, killed)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_probes_of_a_phased_run_hold_out_the_phases_own_samples(tmp_path):
    # Not a random split of the top-level data set, which would hold out samples the phases trained on.
    from omnissl.eval.run import probe_setup
    from omnissl.research.phases import build_phases, parse_phases, split_phases
    from omnissl.train.loop import split_seed

    out = tmp_path / "run"
    args = ("data.phases=[{classes: [0, 1, 2, 3, 4], steps: 2}, {classes: [5, 6, 7, 8, 9], steps: 2}]",
            "train.steps=4", "train.val_every=4", "train.ckpt_every=4", "train.val_batches=1", "viz.enabled=false")
    recipe = load_recipe("image/mae-digits", [*TINY, *args], get_registry())
    train_here(recipe, get_registry(), out)
    setup = probe_setup(out, get_registry())
    assert setup.split["kind"] == "phases"
    data = build_phases(parse_phases(recipe.raw["data"]), get_registry(), recipe.source)
    own = split_phases(data, recipe.get("data", "val_fraction", 0.1) or 0.2, split_seed(recipe), "auto")
    assert setup.test_idx.tolist() == sorted(int(i) for part in own.held_out for i in part)
    assert len(setup.tokens) == len(data) == 1797  # both phases' digits, each once
