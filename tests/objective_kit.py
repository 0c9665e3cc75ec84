"""What the objective tests share: a toy modality on a 2-D grid, smooth samples, a CLI training
run and the falling-loss check (tests/test_{objectives,lejepa,data2vec2,ijepa,ibot}.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from omnissl import CoordGroup, Modality, Tokens, TokenSpec

SPEC = TokenSpec(value_dim=8, coords=(CoordGroup("grid", 2),))
SPEC_KINDS = TokenSpec(value_dim=8, coords=(CoordGroup("grid", 2),), kind_vocab=(3,))
# A tiny encoder and quiet logging for the CLI runs; each test adds its objective and masker.
TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "optim.warmup_steps=5", "train.log_every=1",
        "train.val_every=1000", "probe.enabled=false", "viz.enabled=false"]


class Toy(Modality):
    """A modality that only states its spec (the tests make the tokens themselves)."""

    def __init__(self, spec: TokenSpec = SPEC) -> None:
        self._spec = spec

    def spec(self) -> TokenSpec:
        return self._spec


def grid_sample(side: int, seed: int, kinds: bool = False) -> Tokens:
    """side x side tokens whose values are smooth in space (hidden ones are predictable from visible
    ones); with ``kinds``, one random identity column of vocabulary 3 (:data:`SPEC_KINDS`)."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)
    phase, freq = torch.rand(8, generator=g) * 6.28, torch.rand(2, 8, generator=g)
    return Tokens(values=torch.sin(coords.float() @ freq + phase), coords=coords.float(),
                  kinds=torch.randint(0, 3, (side * side, 1), generator=g) if kinds else None)


def train_cli(tmp_path: Path, recipe: str, *overrides: str) -> list[dict]:
    """``omnissl train RECIPE *TINY *overrides`` in a subprocess; the metrics it logged."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "omnissl", "train", recipe, *TINY, *overrides, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def falls(rows: list[dict], by: float, key=lambda r: r["loss"]) -> None:
    """The mean of ``key`` over the last 5 logged steps is below ``by`` times the first 5's."""
    first, last = (sum(key(r) for r in part) / len(part) for part in (rows[:5], rows[-5:]))
    assert last < by * first, (first, last)
