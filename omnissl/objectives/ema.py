"""An exponential-moving-average teacher: a frozen copy of the encoder that slowly follows it.

Mean teachers (Tarvainen and Valpola, NeurIPS 2017) as BYOL (Grill et al., NeurIPS 2020),
DINO (Caron et al., ICCV 2021), data2vec 2.0 (Baevski et al., ICML 2023) and I-JEPA (Assran
et al., CVPR 2023) use them: after each optimiser step the teacher's weights become
``m * teacher + (1 - m) * student``, with the momentum ``m`` rising from ``momentum`` to 1 over
the run on BYOL's cosine schedule. The teacher is a submodule of the objective, so its
weights are in the objective's ``state_dict`` and every checkpoint: ``--resume`` continues
with the teacher of the interrupted run, and the schedule is a function of the step alone.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's momentum after optimiser step ``step`` (0-based) of ``total_steps``:
    ``1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2``, from ``base`` at step 0 to 1."""
    progress = min(1.0, step / max(1, total_steps))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATeacher(nn.Module):
    """A frozen copy of ``encoder``: no gradients (so no optimiser state), always in eval mode.

    Call it as the encoder (``teacher(values, coords, ...)``, ``teacher.module.forward_batch``);
    :meth:`update` moves it toward the student. An objective holding one calls
    ``self.teacher.update(self.encoder, step, total_steps)`` in its ``after_step``.

    Args:
        encoder: the student encoder; the teacher starts as an exact copy.
        momentum: the momentum at the first step (BYOL 0.996, I-JEPA 0.996, data2vec 2.0 0.9998).
    """

    def __init__(self, encoder: nn.Module, momentum: float = 0.996):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"the teacher's momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.module = copy.deepcopy(encoder)
        self.module.requires_grad_(False)
        self.module.eval()

    def train(self, mode: bool = True) -> "EMATeacher":
        """The teacher stays in eval mode (no dropout, no drop path) whatever the objective's mode."""
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def momentum_at(self, step: int, total_steps: int) -> float:
        return cosine_momentum(step, total_steps, self.momentum)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int, total_steps: int) -> float:
        """``teacher = m * teacher + (1 - m) * student`` for every parameter, with the momentum of
        ``step``; buffers are copied. Returns the momentum used."""
        m = self.momentum_at(step, total_steps)
        mine = list(self.module.parameters())
        theirs = [p.detach() for p in student.parameters()]
        if len(mine) != len(theirs):
            raise ValueError(f"the teacher has {len(mine)} parameters and the student {len(theirs)}: "
                             f"a teacher follows the encoder it was copied from")
        torch._foreach_mul_(mine, m)
        torch._foreach_add_(mine, theirs, alpha=1.0 - m)
        for own, other in zip(self.module.buffers(), student.buffers()):
            own.copy_(other)
        return m
