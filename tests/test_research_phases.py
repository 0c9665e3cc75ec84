"""data.phases: parsing, validation, the concatenated data, the per-phase split, the probe plan."""

import numpy as np
import pytest

from omnissl.errors import RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.research.forgetting import forgetting, format_forgetting
from omnissl.research.phases import (PhasedData, parse_phases, phase_lr, phase_of, phased_evaluation, probe_plan,
                                     split_phases)
from omnissl.train.optim import lr_at


def test_phases_inherit_the_data_section_of_the_same_data_set_only():
    data = {"name": "folder", "root": "/a", "size": 8, "val_fraction": 0.2, "replay": 0.1,
            "phases": [{"classes": ["cat"], "steps": 3}, {"name": "folder", "root": "/b", "steps": 2},
                       {"name": "digits", "steps": 5}]}
    phases = parse_phases(data)
    assert [(p.name, p.options, p.start, p.end) for p in phases] == [
        ("folder", {"root": "/a", "size": 8, "classes": ["cat"]}, 0, 3),
        ("folder", {"root": "/b", "size": 8}, 3, 5),
        ("digits", {}, 5, 10)]
    assert [phase_of(phases, s) for s in (0, 2, 3, 4, 5, 9, 10)] == [0, 0, 1, 1, 2, 2, 2]
    plan = probe_plan(phases)
    assert [(e.step, e.after, e.on) for e in plan] == [(3, 0, (0,)), (5, 1, (0, 1)), (10, 2, (0, 1, 2))]
    assert parse_phases({"name": "digits"}) == []


def recipe(*overrides):
    return load_recipe("image/mae-digits", list(overrides), get_registry())


def test_recipe_validates_phases_and_replay():
    ok = recipe("data.phases=[{steps: 10}, {name: digits, steps: 20}]", "train.steps=30", "data.replay=0.25",
                "data.replay_size=100", "train.keep_checkpoints=10")
    assert ok.train.keep_checkpoints == 10
    assert ok.component("data") == ("digits", {})  # the research keys never reach the data set's factory
    cases = [
        (["data.phases=[{steps: 10}]", "train.steps=30"], "add up to 10, and train.steps is 30"),
        (["data.phases=[{steps: 10, size: 3}]", "train.steps=10"], "data.phases\\[0\\]: data set 'digits' has no "
                                                                   "option 'size'"),
        (["data.phases=[{name: digits}]", "train.steps=10"], "data.phases\\[0\\] needs steps"),
        (["data.phases=[{steps: 5, val_fraction: 0.3}, {steps: 5}]", "train.steps=10"], "set it once"),
        (["data.replay=0.5"], "there are none: set data.phases"),
        (["data.phases=[{steps: 10}]", "train.steps=10", "data.replay=1.5"], "data.replay must be >= 0 and < 1"),
        (["data.phases=[{steps: 10}]", "train.steps=10", "data.replay_size=10"], "set data.replay too"),
        (["train.keep_checkpoints=0"], "train.keep_checkpoints must be >= 1"),
        (["data.subset=''"], "got an empty string"),
        (["data.phases=[{name: nope, steps: 10}]", "train.steps=10"], "nope"),
        (["data.phase_schedule=restart"], "data.phase_schedule .*there are none: set data.phases"),
        (["data.phases=[{steps: 10}]", "train.steps=10", "data.phase_schedule=again"],
         "data.phase_schedule must be one of"),
        (["data.phases=[{steps: 200}, {steps: 50}]", "train.steps=250", "data.phase_schedule=restart",
          "optim.warmup_steps=50"], "data.phases\\[1\\] trains 50 steps: lower optim.warmup_steps"),
    ]
    for overrides, message in cases:
        with pytest.raises(RecipeError, match=message):
            recipe(*overrides)


def test_phase_schedule_runs_once_over_all_phases_or_again_in_each():
    r = recipe("data.phases=[{steps: 30}, {steps: 20}]", "train.steps=50", "optim.warmup_steps=5",
               "optim.lr=1.0", "optim.min_lr=0.0")
    phases = parse_phases(r.raw["data"])

    def schedule(step, total):
        return lr_at(step, total, 1.0, r.optim)

    once = phase_lr(phases, "continue", schedule, 50)
    assert [once(s) for s in range(50)] == [lr_at(s, 50, 1.0, r.optim) for s in range(50)]
    assert phase_lr(phases, None, schedule, 50)(37) == once(37)  # continue is the default
    again = phase_lr(phases, "restart", schedule, 50)
    rates = [again(s) for s in range(50)]
    # each phase: warm-up from 1/5 of the peak to the peak over 5 steps, then a cosine to ~0
    for start, steps in ((0, 30), (30, 20)):
        assert rates[start:start + 5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        decay = rates[start + 5:start + steps]
        assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] < 0.02
        assert rates[start:start + steps] == [lr_at(s, steps, 1.0, r.optim) for s in range(steps)]
    assert once(30) > 0.4 and again(30) == pytest.approx(0.2)  # one schedule is half way down; restarted, warm-up
    assert [again(s) for s in range(50)] == rates  # a function of the step alone: --resume gives the same


def test_restarted_schedule_is_what_a_phased_run_logs(tmp_path):
    import json

    from omnissl.train import train

    args = ["data.phases=[{steps: 4}, {steps: 4}]", "train.steps=8", "data.phase_schedule=restart",
            "optim.warmup_steps=2", "optim.min_lr=0.0", "train.batch_size=16", "train.log_every=1",
            "train.val_every=0", "train.ckpt_every=8", "probe.enabled=false", "viz.enabled=false",
            "encoder.dim=32", "encoder.depth=1", "encoder.heads=2", "objective.decoder_dim=32",
            "objective.decoder_depth=1", "objective.decoder_heads=2"]
    r = recipe(*args)
    train(r, get_registry(), tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [row["lr"] for row in logged if "lr" in row]
    peak = lrs[1]  # per phase of 4 steps: warm-up over 2, then the cosine from the peak (half way at its 2nd step)
    assert peak > 0 and lrs == pytest.approx([peak / 2, peak, peak, peak / 2] * 2)


class Toy:
    def __init__(self, n, label, groups=None):
        self.labels = np.full(n, label)
        self.items = [{"x": label * 100 + i} for i in range(n)]
        if groups is not None:
            self.groups = np.arange(n) // groups

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_phased_data_concatenates_and_splits_each_phase_alone():
    data = PhasedData([Toy(10, 0, groups=2), Toy(6, 1, groups=3)])
    assert len(data) == 16 and data.locate(12) == (1, 2) and data[12] == {"x": 102}
    assert data.labels.tolist() == [0] * 10 + [1] * 6
    assert data.groups[0] == "p0:0" and data.groups[-1] == "p1:1"  # phases never share a group
    split = split_phases(data, 0.5, seed=0, mode="auto")
    assert [info["kind"] for info in split.info] == ["grouped", "grouped"]
    for p in (0, 1):
        both = np.concatenate([split.train[p], split.held_out[p]])
        assert sorted(both.tolist()) == data.phase_indices(p).tolist()
        assert not set(data.groups[split.train[p]]) & set(data.groups[split.held_out[p]])
    val = split.validation_indices()
    assert sorted(val.tolist()) == sorted(np.concatenate(split.held_out).tolist())
    assert {data.locate(int(i))[0] for i in val[:2]} == {0, 1}  # the first batches see every phase
    with pytest.raises(IndexError):
        data[16]


def test_phased_evaluation_is_each_phase_split_alone_not_a_split_of_the_top_level_data_set():
    # Probes of a phased run must hold out what the loop held out. The top-level data set (here all
    # ten digits) is only the phases' defaults: a random split of it holds out samples that the
    # phases trained on.
    from omnissl.train.data import held_out_split

    phased = recipe("data.phases=[{classes: [0, 1, 2, 3, 4], steps: 2}, {classes: [5, 6, 7, 8, 9], steps: 2}]",
                    "train.steps=4", "data.split_seed=3")
    data, split = phased_evaluation(phased, get_registry(), 0.2)
    own = split_phases(data, 0.2, 3, "auto")  # what the training loop splits
    assert split.train.tolist() == sorted(np.concatenate(own.train).tolist())
    assert split.held_out.tolist() == sorted(np.concatenate(own.held_out).tolist())
    assert split.info["kind"] == "phases" and [i["held_out"] for i in split.info["phases"]] == [180, 179]
    assert not set(split.train.tolist()) & set(split.held_out.tolist())
    originals = [data.datasets[p].indices[idx - data.offsets[p]] for p, idx in enumerate(own.train)]
    top_level = held_out_split(data.datasets[0].__class__(), 0.2, 3, "auto")  # the digits, unfiltered
    assert set(np.concatenate(originals).tolist()) & set(top_level.held_out.tolist())  # what it would leak
    assert phased_evaluation(recipe(), get_registry(), 0.2) is None  # no phases: the caller's own split


def test_forgetting_table_from_phase_probe_records():
    records = [{"step": 10, "after_phase": 0, "phase": 0, "linear": 0.9},
               {"step": 20, "after_phase": 1, "phase": 0, "linear": 0.5},
               {"step": 20, "after_phase": 1, "phase": 0, "linear": 0.6},  # probed again after a resume: wins
               {"step": 20, "after_phase": 1, "phase": 1, "linear": 0.8}]
    table = forgetting(records)
    assert table[0] == {"after_own_phase": 0.9, "final": 0.6, "forgetting": pytest.approx(0.3)}
    assert table[1] == {"after_own_phase": 0.8, "final": 0.8, "forgetting": 0.0}
    assert "| 0 | 0.9000 | 0.6000 | 0.3000 |" in format_forgetting(table, "accuracy")


def test_phase_probes_under_fsdp_are_refused_before_anything_is_written(tmp_path):
    # the end-of-phase probes run the live encoder outside the objective's forward, which FSDP shards
    from omnissl.errors import TrainingError
    from omnissl.train import train

    phased = ["data.phases=[{steps: 2}, {steps: 2}]", "train.steps=4", "train.strategy=fsdp"]
    with pytest.raises(TrainingError, match="train.strategy=auto \\(DDP\\) or set probe.enabled=false"):
        train(recipe(*phased), get_registry(), tmp_path / "run")
    assert not (tmp_path / "run").exists()
