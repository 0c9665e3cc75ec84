"""The EMA teacher: exact update, cosine momentum, frozen, and exact resume after SIGKILL."""

import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from omnissl import CoordGroup, Modality, TokenSpec
from omnissl.encoders import TokenEncoder
from omnissl.objectives import MAE, EMATeacher, cosine_momentum
from omnissl.plugins import load_plugins
from omnissl.recipe import OptimConfig, load_recipe
from omnissl.train import train as train_here
from omnissl.train.optim import make_optimizer


def tiny(dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    return module.to(dtype)


def test_cosine_momentum_runs_from_base_to_one():
    assert cosine_momentum(0, 100, 0.996) == 0.996
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998, abs=1e-15)
    assert cosine_momentum(100, 100, 0.996) == 1.0
    values = [cosine_momentum(s, 100, 0.9) for s in range(101)]
    assert all(b >= a for a, b in zip(values, values[1:]))  # never decreases
    assert cosine_momentum(25, 100, 0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2, abs=1e-15)


def test_update_is_the_closed_form():
    student = tiny()
    teacher = EMATeacher(student, momentum=0.75)
    for p in student.parameters():
        assert p.requires_grad
    start = [p.detach().clone() for p in teacher.module.parameters()]
    with torch.no_grad():  # the student moves once, then stays: teacher - student shrinks by prod(m_k)
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student[1].running_mean.fill_(0.5)
    target = [p.detach().clone() for p in student.parameters()]
    used = [teacher.update(student, step, 10) for step in range(6)]
    assert used == [cosine_momentum(step, 10, 0.75) for step in range(6)]
    shrink = math.prod(used)
    for t, s0, s in zip(teacher.module.parameters(), start, target):
        torch.testing.assert_close(t, s + (s0 - s) * shrink, rtol=1e-13, atol=1e-13)
    assert torch.equal(teacher.module[1].running_mean, student[1].running_mean)  # buffers are copied


def test_one_update_is_bit_exact():
    student = tiny(torch.float32)
    teacher = EMATeacher(student, momentum=0.75)
    with torch.no_grad():
        for t, s in zip(teacher.module.parameters(), student.parameters()):
            t.fill_(1.0)
            s.fill_(3.0)
    teacher.update(student, 0, 10)  # m = 0.75: 0.75 * 1 + 0.25 * 3, exact in binary
    assert all(torch.equal(t, torch.full_like(t, 1.5)) for t in teacher.module.parameters())


def test_teacher_is_frozen_in_eval_mode_and_saved():
    class Toy(Modality):
        def spec(self) -> TokenSpec:
            return TokenSpec(value_dim=4, coords=(CoordGroup("grid", 2),))

    class WithTeacher(MAE):
        def __init__(self, encoder, modality):
            super().__init__(encoder, modality, decoder_dim=8, decoder_depth=1, decoder_heads=2)
            self.teacher = EMATeacher(encoder)

    torch.manual_seed(0)
    objective = WithTeacher(TokenEncoder(Toy().spec(), None, dim=8, depth=1, heads=2, drop_path=0.5), Toy())
    objective.train()
    assert not objective.teacher.module.training and objective.encoder.training
    assert not any(p.requires_grad for p in objective.teacher.parameters())
    optimizer = make_optimizer(objective, OptimConfig(lr=1e-3), 1e-3, torch.device("cpu"))
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in objective.teacher.parameters()}
    assert {id(p) for p in objective.encoder.parameters()} <= optimised
    state = objective.state_dict()
    teacher_keys = {k[len("teacher.module."):] for k in state if k.startswith("teacher.module.")}
    assert teacher_keys == set(objective.encoder.state_dict())  # checkpoints carry the whole teacher
    with pytest.raises(ValueError, match="momentum must be in"):
        EMATeacher(objective.encoder, momentum=1.5)


# An MAE whose loss also regresses an EMA teacher's features of the hidden tokens: the losses of
# a run depend on the teacher, so a resume that lost the teacher's state would show.
TEACHER_OBJECTIVE = """
    import torch

    from omnissl import hookimpl
    from omnissl.objectives import MAE, EMATeacher
    from omnissl.tokens import gather_rows


    class TeacherMAE(MAE):
        def __init__(self, encoder, modality, decoder_dim: int = 32, decoder_depth: int = 1,
                     decoder_heads: int = 2, norm_target: bool = False, momentum: float = 0.9):
            super().__init__(encoder, modality, decoder_dim, decoder_depth, decoder_heads, norm_target=norm_target)
            self.teacher = EMATeacher(encoder, momentum)
            self.to_teacher = torch.nn.Linear(decoder_dim, encoder.dim)

        def forward(self, batch, mask):
            features = self.forward_decoder(batch, mask, self.forward_encoder(batch, mask))
            out = self.hidden_loss(batch, mask, features, self.heads)
            target = gather_rows(self.teacher(batch.values, batch.coords, batch.kinds, batch.pad), mask.hidden_idx)
            real = (~mask.hidden_pad)[..., None].float()
            distill = (((self.to_teacher(features) - target) ** 2) * real).sum() / real.sum() / target.shape[-1]
            out.loss = out.loss + distill
            out.metrics.update(loss=out.loss.detach(), loss_teacher=distill.detach())
            return out

        def after_step(self, step, total_steps):
            self.teacher.update(self.encoder, step, total_steps)


    @hookimpl
    def omnissl_objectives():
        return {"teacher_mae": TeacherMAE}
"""

KILLER = """
    import os
    import signal

    from omnissl import hookimpl

    @hookimpl
    def omnissl_log(step):
        if step == int(os.environ.get("KILL_AT_STEP", "-1")):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a pre-empted job
"""

ARGS = ["objective.name=teacher_mae", "objective.decoder_dim=32", "objective.decoder_heads=2", "encoder.dim=32",
        "encoder.depth=2", "encoder.heads=2", "train.batch_size=32", "optim.warmup_steps=2", "train.log_every=1",
        "train.steps=12", "train.ckpt_every=4", "train.val_every=6", "probe.enabled=false", "viz.enabled=false",
        "modality.crop_scale=[0.5, 1.0]"]


def train(out: Path, plugin_dir: Path, kill_at: int | None = None,
          resume: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMNISSL_PLUGINS="teacher_objective,killer", KILL_AT_STEP=str(kill_at or -1))
    env["PYTHONPATH"] = f"{plugin_dir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "omnissl", "train", "image/mae-digits", *ARGS, "--out", str(out)]
    return subprocess.run(command + (["--resume"] if resume else []), capture_output=True, text=True, env=env,
                          timeout=600)


def plugin(name: str, source: str) -> types.ModuleType:
    """A plugin module made from ``source``, for runs in this process."""
    module = types.ModuleType(name)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
    return module


def train_in_process(out: Path, resume: bool = False) -> None:
    """The run :func:`train` starts, in this process (each ``python -m omnissl`` costs seconds of imports)."""
    registry = load_plugins([plugin("teacher_objective", TEACHER_OBJECTIVE)])
    train_here(load_recipe("image/mae-digits", ARGS, registry), registry, out, resume=resume)


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_killed_run_with_a_teacher_resumes_exactly(tmp_path):
    """The uninterrupted run and the resume run in this process; the killed run in a process of its
    own, which SIGKILL ends as step 10 is logged (after the checkpoint of step 8)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "teacher_objective.py").write_text(textwrap.dedent(TEACHER_OBJECTIVE))
    (plugins / "killer.py").write_text(textwrap.dedent(KILLER))
    straight = tmp_path / "straight"
    train_in_process(straight)
    killed = tmp_path / "killed"
    result = train(killed, plugins, kill_at=10)
    assert result.returncode == -9, result.stderr
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    train_in_process(killed, resume=True)
    assert records(killed) == records(straight)
    assert [r["step"] for r in records(straight)] == list(range(1, 13))
    assert all("loss_teacher" in r for r in records(straight))
    # the teacher moved, and is not the student: the check above covers its state
    model = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    student = {k[len("encoder."):]: v for k, v in model.items() if k.startswith("encoder.")}
    teacher = {k[len("teacher.module."):]: v for k, v in model.items() if k.startswith("teacher.module.")}
    assert set(student) == set(teacher)
    assert not all(torch.equal(student[k], teacher[k]) for k in student)
