"""Sequential pre-training: ``data.phases`` trains on data sets one after another, with replay.

```yaml
data:
  name: image_folder          # the defaults every phase starts from
  root: /data/animals
  val_fraction: 0.2
  phases:
    - {steps: 2000}                             # the top-level options as they are
    - {root: /data/vehicles, steps: 2000}       # same data set, another option
    - {name: numpy, path: /data/more.npz, steps: 2000}   # another data set: its own options only
  replay: 0.25                # a quarter of each batch after the first phase is replayed
  replay_size: 5000           # from a reservoir of at most 5000 earlier samples
  phase_schedule: restart     # the learning-rate schedule again in each phase (default: continue)
train:
  steps: 6000                 # the phases' steps add up to it
```

A phase is a data set section with a number of steps. It inherits the top-level ``data``
options when it names the same data set (or none), and only its own when it names another.
The phases' data sets are concatenated (:class:`PhasedData`, global index = offset + local
index); each phase is split into training and held-out samples on its own, as a run on it
alone would be (``data.split``, ``data.val_fraction``, the split seed), so the held-out split
of every phase exists from the start and the end-of-phase probes measure forgetting on it
(:func:`probe_plan`). Batches are a pure function of (seed, step) and of the reservoir at the
start of the step's phase (:class:`PhasedBatchSampler`), which the checkpoint carries.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from omnissl.errors import DataError, PluginError, RecipeError

DEFAULT_REPLAY_SIZE = 10_000
PHASE_STREAM = 4  # seeds of each phase's sample order: (seed, 4, phase)
REPLAY_STREAM = 5  # seeds of the replayed samples: (seed, 5, step, micro-batch)


@dataclass(frozen=True)
class Phase:
    """One phase: the data set to build (name, options) and its steps ``[start, end)``."""

    name: str
    options: dict[str, Any]
    steps: int
    start: int

    @property
    def end(self) -> int:
        return self.start + self.steps


def parse_phases(data: dict[str, Any]) -> list[Phase]:
    """The phases of a recipe's ``data`` section (none when it has no ``phases``)."""
    from omnissl.recipe import CORE_KEYS, RESEARCH_KEYS

    phases = data.get("phases")
    if not phases:
        return []
    shared = {k: v for k, v in data.items() if k not in CORE_KEYS["data"] and k not in RESEARCH_KEYS["data"]}
    out, start = [], 0
    for section in phases:
        section = dict(section)
        steps = section.pop("steps")
        name = section.pop("name", shared["name"])
        options = {**{k: v for k, v in shared.items() if k != "name"}, **section} if name == shared["name"] \
            else section
        out.append(Phase(name, options, int(steps), start))
        start += int(steps)
    return out


def phase_of(phases: Sequence[Phase], step: int) -> int:
    """The phase that trains step ``step`` (0-based; the last phase past the end)."""
    for p, phase in enumerate(phases):
        if step < phase.end:
            return p
    return len(phases) - 1


@dataclass(frozen=True)
class PhaseProbe:
    """At ``step`` (the end of phase ``after``), probe on the held-out split of each of ``on``."""

    step: int
    after: int
    on: tuple[int, ...]


def probe_plan(phases: Sequence[Phase]) -> list[PhaseProbe]:
    """At the end of each phase, probes on that phase and every earlier one: the score on phase q
    after phase q, against its score after later phases, is the forgetting of q."""
    return [PhaseProbe(phase.end, p, tuple(range(p + 1))) for p, phase in enumerate(phases)]


def check_research_keys(recipe: Any, registry: Any, where: Callable[[str, str], str]) -> None:
    """Validate ``data.subset``, ``data.phases``, ``data.replay``, ``data.replay_size`` and
    ``data.phase_schedule`` (called by :func:`omnissl.recipe.validate` when one is set; their types
    and ranges are checked there)."""
    from omnissl.recipe import CORE_KEYS, RESEARCH_KEYS, _check_value, _closest, factory_parameters

    data, src = recipe.raw["data"], recipe.source
    if data.get("subset") is not None and not str(data["subset"]).strip():
        raise RecipeError(f"{where(src, 'data.subset')}: data.subset names a subset file (omnissl select --out); "
                          f"got an empty string")
    phases = data.get("phases")
    if data.get("replay") is not None and not phases:
        raise RecipeError(f"{where(src, 'data.replay')}: data.replay replays earlier phases, and there are none: set "
                          f"data.phases, or remove data.replay")
    if data.get("phase_schedule") is not None and not phases:
        raise RecipeError(f"{where(src, 'data.phase_schedule')}: data.phase_schedule says how the learning-rate "
                          f"schedule spans data.phases, and there are none: set data.phases, or remove the key")
    if data.get("replay_size") is not None and data.get("replay") is None:
        raise RecipeError(f"{where(src, 'data.replay_size')}: data.replay_size is the size of the replay reservoir; "
                          f"set data.replay too (the fraction of each batch replayed)")
    if phases is None:
        return
    if not phases:
        raise RecipeError(f"{where(src, 'data.phases')}: data.phases is empty; list at least one phase "
                          f"({{name: ..., steps: N}}) or remove the key")
    if data.get("subset") is not None:
        raise RecipeError(f"{where(src, 'data.subset')}: data.subset restricts one data set; with data.phases, "
                          f"restrict each phase's data set through its own options")
    for i, section in enumerate(phases):
        key = f"data.phases[{i}]"
        steps = section.get("steps")
        if steps is None:
            raise RecipeError(f"{where(src, 'data.phases')}: {key} needs steps (how many optimiser steps it trains)")
        _check_value(steps, int, f"{key}.steps", where(src, "data.phases"))
        if steps < 1:
            raise RecipeError(f"{where(src, 'data.phases')}: {key}.steps must be >= 1, got {steps}")
        inner = [k for k in section if k in CORE_KEYS["data"] or k in RESEARCH_KEYS["data"]]
        if inner:
            raise RecipeError(f"{where(src, 'data.phases')}: {key} sets {inner[0]!r}, which applies to every phase: "
                              f"set it once in the data section")
    for i, phase in enumerate(parse_phases(data)):
        key = f"data.phases[{i}]"
        try:
            params = factory_parameters(registry.get("datasets", phase.name), "datasets")
        except PluginError as exc:
            raise RecipeError(f"{where(src, 'data.phases')}: {key}: {exc}") from None
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for option, value in phase.options.items():
            if option not in params and not takes_any:
                raise RecipeError(f"{where(src, 'data.phases')}: {key}: data set {phase.name!r} has no option "
                                  f"{option!r}.{_closest(option, list(params))}")
            if option in params:
                _check_value(value, params[option].annotation, f"{key}.{option}", where(src, "data.phases"))
    total = sum(int(s["steps"]) for s in phases)
    if total != recipe.train.steps:
        raise RecipeError(f"{where(src, 'data.phases')}: the phases' steps add up to {total}, and train.steps is "
                          f"{recipe.train.steps}; make them equal")
    warmup = recipe.optim.warmup_steps
    if data.get("phase_schedule") == "restart":
        short = next((i for i, s in enumerate(phases) if int(s["steps"]) <= warmup), None)
        if short is not None:
            raise RecipeError(f"{where(src, 'data.phase_schedule')}: with data.phase_schedule: restart every phase "
                              f"warms up again over optim.warmup_steps ({warmup}), and data.phases[{short}] trains "
                              f"{phases[short]['steps']} steps: lower optim.warmup_steps below every phase's steps")


def phase_lr(phases: Sequence[Phase], schedule: str | None, lr_at: Callable[[int, int], float],
             total: int) -> Callable[[int], float]:
    """The learning rate of each of a run's ``total`` steps, from ``lr_at(step, total)`` (warm-up
    and cosine decay over ``total`` steps): without phases, or with ``continue`` (the default), it
    runs once over all the steps, as a run on the phases' union would; ``restart`` runs it again
    in every phase, from its warm-up to the end of its decay (re-warming and re-decaying, as in continual pre-training:
    Gupta et al. 2023, "Continual Pre-Training of Large Language Models: How to (re)warm your
    model?"; Ibrahim et al. 2024, "Simple and Scalable Strategies to Continually Pre-train Large
    Language Models"). A pure function of the step, so ``--resume`` gives the same rates."""
    if not phases or schedule in (None, "continue"):
        return lambda step: lr_at(step, total)
    if schedule != "restart":
        raise ValueError(f"data.phase_schedule must be 'continue' or 'restart', got {schedule!r}")

    def restarted(step: int) -> float:
        phase = next((p for p in phases if step < p.end), phases[-1])
        return lr_at(step - phase.start, phase.steps)

    return restarted


class PhasedData:
    """The phases' data sets one after another: index ``offsets[p] + i`` is sample i of phase p.

    Per-sample attributes that the core reads (``labels``, ``groups``, ``split``) are
    concatenated where every phase has them (labels: NaN for a phase without); ``groups`` get
    the phase as a prefix, so two phases never share a group.
    """

    def __init__(self, datasets: Sequence[Any]):
        self.datasets = list(datasets)
        sizes = [len(d) for d in self.datasets]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        labelled = [getattr(d, "labels", None) for d in self.datasets]
        self.labels = None if all(v is None for v in labelled) else np.concatenate(
            [np.asarray(v, dtype=np.float64) if v is not None else np.full(n, np.nan) for v, n in zip(labelled, sizes)])
        groups = [getattr(d, "groups", None) for d in self.datasets]
        self.groups = None if any(g is None for g in groups) else np.concatenate(
            [np.char.add(f"p{p}:", np.asarray(g).astype(str)) for p, g in enumerate(groups)])
        split = [getattr(d, "split", None) for d in self.datasets]
        self.split = None if any(s is None for s in split) else np.concatenate([np.asarray(s) for s in split])
        classes = [getattr(d, "classes", None) for d in self.datasets]
        self.classes = classes[0] if all(c is not None and list(c) == list(classes[0]) for c in classes) else None
        self.task = getattr(self.datasets[0], "task", None)
        self.group_kind = getattr(self.datasets[0], "group_kind", "group")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(phase, index within the phase's data set) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside the {len(self)} samples of the phases")
        phase = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return phase, int(index - self.offsets[phase])

    def __getitem__(self, index: int) -> Any:
        phase, local = self.locate(int(index))
        return self.datasets[phase][local]

    def phase_indices(self, phase: int) -> np.ndarray:
        return np.arange(self.offsets[phase], self.offsets[phase + 1])


def build_phases(phases: Sequence[Phase], registry: Any, source: str) -> PhasedData:
    """Build every phase's data set (one error naming the phase when one cannot be built)."""
    datasets = []
    for p, phase in enumerate(phases):
        factory = registry.get("datasets", phase.name)
        try:
            dataset = factory(**phase.options)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{source}: cannot build data.phases[{p}] ({phase.name!r} with {phase.options}): "
                              f"{exc}") from exc
        except DataError as exc:  # the data set's own message names its option (data.<option>): say which phase
            raise DataError(f"data.phases[{p}] ({phase.name!r} with {phase.options}): {exc}") from exc
        if len(dataset) == 0:
            raise DataError(f"data.phases[{p}] ({phase.name!r}, {phase.options}) has no samples")
        datasets.append(dataset)
    return PhasedData(datasets)


@dataclass
class PhaseSplit:
    """Each phase's training and held-out samples (global indices), and how they were split."""

    train: list[np.ndarray]
    held_out: list[np.ndarray]
    info: list[dict[str, Any]]

    def validation_indices(self) -> np.ndarray:
        """Every phase's held-out samples, interleaved (first of each phase, then second...), so
        that the first validation batches cover every phase."""
        longest = max((len(h) for h in self.held_out), default=0)
        rows = [h[i] for i in range(longest) for h in self.held_out if i < len(h)]
        return np.asarray(rows, dtype=np.int64)

    def as_split(self, train: np.ndarray, held_out: np.ndarray) -> Any:
        """``train`` and ``held_out`` (this split's samples, in the caller's order) as one
        :class:`~omnissl.train.data.HeldOutSplit` of kind ``phases``, with each phase's info."""
        from omnissl.train.data import HeldOutSplit

        return HeldOutSplit(train, held_out, {"kind": "phases", "train": int(len(train)),
                                              "held_out": int(len(held_out)), "phases": self.info})


def split_phases(data: PhasedData, val_fraction: float, seed: int, mode: str) -> PhaseSplit:
    """Split each phase as a run on it alone would be split (:func:`held_out_split`)."""
    from omnissl.train.data import held_out_split

    train, held_out, info = [], [], []
    for p, dataset in enumerate(data.datasets):
        split = held_out_split(dataset, val_fraction, seed, mode)  # type: ignore[arg-type]
        train.append(split.train + data.offsets[p])
        held_out.append(split.held_out + data.offsets[p])
        info.append(split.info)
    return PhaseSplit(train, held_out, info)


def phased_evaluation(recipe: Any, registry: Any, val_fraction: float) -> tuple[PhasedData, Any] | None:
    """For a recipe with ``data.phases``: the phases' data and the union of their own splits, as
    the training loop split them (each phase alone); None for a recipe without phases.

    What probes and fine-tuning of a phased run must be scored on: the top-level data set (what
    :func:`omnissl.build.build_dataset` builds) is only the phases' defaults, and a split of it
    at random would hold out samples the run trained on.

    Returns:
        (the :class:`PhasedData`, a :class:`~omnissl.train.data.HeldOutSplit` of it).
    """
    from omnissl.train.loop import split_seed

    phases = parse_phases(recipe.raw["data"])
    if not phases:
        return None
    data = build_phases(phases, registry, recipe.source)
    split = split_phases(data, val_fraction, split_seed(recipe), recipe.get("data", "split", "auto"))
    return data, split.as_split(np.sort(np.concatenate(split.train)), np.sort(np.concatenate(split.held_out)))


class PhasedBatchSampler:
    """The global batches of a phased run, with replay: ``batch(step)``, as
    :class:`~omnissl.train.data.SeededBatchSampler` gives them, so the loop's rank sampler cuts
    them into micro-batches the same way (``RankBatchSampler(phased, micro, rank, world)``).

    Step s of phase p takes ``batch_size - k`` samples of phase p's training split (batch
    ``s - start_p`` of a :class:`SeededBatchSampler` of its own, seeded by (seed, phase)) and,
    after the first phase, ``k =`` :func:`replay_count` samples from the reservoir; a generator
    seeded by (seed, step) draws them and shuffles the batch, so every micro-batch gets its share
    of replayed samples. The reservoir used in phase p holds a uniform sample of every sample that
    phases 0..p-1 trained on (replayed ones excluded): it is filled at the start of each phase from
    the previous phase's stream, which is itself a function of the seed, so it depends on nothing a
    loader prefetches, and a checkpoint carries it (:meth:`state_dict`).

    Args:
        phases: the phases (steps and order).
        train: each phase's training indices (global).
        batch_size: the global batch (``train.batch_size``).
        replay: ``data.replay`` (0: none); ``replay_size``: the reservoir's capacity.
    """

    def __init__(self, phases: Sequence[Phase], train: Sequence[np.ndarray], batch_size: int, seed: int,
                 replay: float = 0.0, replay_size: int = DEFAULT_REPLAY_SIZE):
        from omnissl.research.replay import replay_count
        from omnissl.train.data import SeededBatchSampler

        self.phases, self.batch_size, self.seed, self.replay_size = list(phases), batch_size, seed, replay_size
        self.replayed = [replay_count(batch_size, replay) if p > 0 else 0 for p in range(len(self.phases))]
        self.samplers = []
        for p, indices in enumerate(train):
            phase_seed = int(np.random.SeedSequence([seed, PHASE_STREAM, p]).generate_state(1)[0])
            try:
                self.samplers.append(SeededBatchSampler(indices, batch_size - self.replayed[p], phase_seed))
            except DataError as exc:
                raise DataError(f"data.phases[{p}]: {exc}") from None
        self._states: dict[int, dict[str, Any]] = {}  # phase -> reservoir state at its start
        self._live: tuple[int, Any] | None = None  # (phase, its reservoir)

    def reservoir(self, phase: int) -> Any:
        """The reservoir at the start of ``phase``: every sample of phases < ``phase`` offered to it."""
        from omnissl.research.replay import Reservoir

        if self._live is not None and self._live[0] == phase:
            return self._live[1]
        known = max((q for q in self._states if q <= phase), default=None)
        reservoir = Reservoir(self.replay_size, self.seed)
        if known is not None:
            reservoir.load_state_dict(self._states[known])
        for q in range(0 if known is None else known, phase):
            for s in range(self.phases[q].steps):
                reservoir.add([index for index, _ in self.samplers[q].batch(s)])
            self._states[q + 1] = reservoir.state_dict()
        self._states.setdefault(phase, reservoir.state_dict())
        self._live = (phase, reservoir)
        return reservoir

    def batch(self, step: int) -> list[tuple[int, int | None]]:
        """The global batch of ``step`` (0-based): ``(index, item_seed)`` pairs."""
        from omnissl.research.replay import compose_batch

        p = phase_of(self.phases, step)
        own = self.samplers[p].batch(step - self.phases[p].start)
        if not self.replayed[p]:
            return own
        rng = np.random.default_rng([self.seed, REPLAY_STREAM, step])
        batch = compose_batch(own, self.reservoir(p), self.replayed[p], rng)
        return [batch[i] for i in rng.permutation(len(batch))]

    def state_dict(self, step: int) -> dict[str, Any]:
        """What a checkpoint at ``step`` (steps done) needs to resume exactly: the reservoir of the
        phase that trains step ``step``."""
        p = phase_of(self.phases, step)
        return {"phase": p, "reservoir": self.reservoir(p).state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._states[int(state["phase"])] = state["reservoir"]
        self._live = None
