"""Which samples are worth pre-training on? ``omnissl select RUN --by loss|redundancy|random``.

A pre-trained run scores every sample of its training split, and a fraction of them is kept
in a subset file that ``data.subset`` trains on (any recipe; validation and probes keep the
whole held-out split):

- ``loss``: the run's own objective on the sample, averaged over a few fixed masks. The
  hardest samples (highest loss) are kept by default, following Sorscher et al. ("Beyond
  neural scaling laws: beating power law scaling via data pruning", NeurIPS 2022): when the
  data are plentiful next to what is kept, keeping the hard examples prunes best, while from
  scarce data the easy ones should be kept instead (``end="easy"``); the hardest end also holds
  outliers and broken samples, which is why the experiment compares it with the controls.
  Hard Patches Mining (Wang et al., CVPR 2023) makes the same argument within a sample: what
  masked modelling still reconstructs badly is what it has left to learn.
- ``redundancy``: SemDeDup (Abbas et al., "SemDeDup: Data-efficient learning at web-scale
  through semantic deduplication", 2023): the encoder's pooled, L2-normalised embeddings are
  clustered with k-means; inside each cluster the samples are ordered farthest from the
  centroid first, and each gets the largest cosine similarity to a sample before it. A sample
  close to an earlier one is a near-duplicate; the samples with the smallest such similarity
  are kept until the fraction is reached (the same as SemDeDup's threshold, chosen so that the
  fraction remains), so one representative per group of near-duplicates stays.
- ``random``: the control.

The subset file lists sample ids, one a line, after ``#`` comment lines that say how it was
made: the data set's ``sample_ids`` when it has them (unique strings), else indices into the
data set (``# ids: indices``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from omnissl.errors import DataError, OmnisslError

Method = Literal["loss", "redundancy", "random"]
MASKS = 4  # fixed masks per sample for --by loss
CLUSTER_SIZE = 500  # --by redundancy: k-means clusters of about this many samples
SELECT_STREAM = 3  # step_generator stream of selection masks: (3, mask, batch); training uses 0-2


@dataclass
class Selection:
    """The kept samples (data set indices, sorted) and how they were chosen."""

    indices: np.ndarray
    ids: list[str]
    id_kind: str  # "sample_ids" or "indices"
    info: dict[str, Any]


def sample_ids(dataset: Any) -> tuple[list[str], str]:
    """The data set's ``sample_ids`` when it has unique ones for every sample, else its indices."""
    ids = getattr(dataset, "sample_ids", None)
    if ids is not None and len(ids) == len(dataset):
        ids = [str(i) for i in ids]
        if len(set(ids)) == len(ids):
            return ids, "sample_ids"
    return [str(i) for i in range(len(dataset))], "indices"


def keep_count(fraction: float, n: int) -> int:
    if not 0 < fraction <= 1:
        raise OmnisslError(f"--keep must be a fraction in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


def select_random(n: int, keep: int, seed: int) -> np.ndarray:
    """``keep`` of ``range(n)`` at random (positions into the training split)."""
    return np.sort(np.random.default_rng([seed, SELECT_STREAM]).permutation(n)[:keep])


def select_by_score(scores: np.ndarray, keep: int, end: Literal["hard", "easy"]) -> np.ndarray:
    """The ``keep`` highest (``hard``) or lowest (``easy``) scores; ties keep the earlier sample."""
    order = np.argsort(-scores if end == "hard" else scores, kind="stable")
    return np.sort(order[:keep])


def redundancy_scores(features: np.ndarray, seed: int, cluster_size: int = CLUSTER_SIZE) -> np.ndarray:
    """SemDeDup's score per sample: its largest cosine similarity to a sample before it in its
    k-means cluster (ordered farthest from the centroid first); -inf for each cluster's first.

    Args:
        features: (n, dim) pooled embeddings.
    Returns:
        (n,) scores; a high score is a near-duplicate of a sample that stays.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = max(1, min(n, int(np.ceil(n / cluster_size))))
    kind = MiniBatchKMeans if n > 50_000 else KMeans
    labels = kind(n_clusters=k, n_init=3, random_state=seed).fit_predict(x) if k > 1 else np.zeros(n, dtype=int)
    scores = np.full(n, -np.inf)
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if len(members) < 2:
            continue
        centroid = x[members].mean(axis=0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        members = members[np.argsort(x[members] @ centroid, kind="stable")]  # farthest from the centroid first
        sim = x[members] @ x[members].T  # [m, m] cosine similarities
        sim[np.tril_indices(len(members))] = -np.inf  # only samples before each one count
        scores[members] = sim.max(axis=0)
    return scores


@torch.no_grad()
def loss_scores(objective: torch.nn.Module, masker: Any, tokens: Any, indices: np.ndarray, batch_size: int,
                seed: int, device: torch.device, masks: int = MASKS) -> np.ndarray:
    """The objective's loss for each sample of ``indices``, averaged over ``masks`` fixed masks.

    Masked-prediction objectives (MAE, SimMIM and their kin) are scored a batch at a time:
    each sample's loss is the mean over its own hidden tokens of what ``hidden_loss`` averages
    over the batch. Other objectives are scored one sample per forward (slow), which is the
    sample's loss only where the objective's loss does not use batch statistics.

    Args:
        indices: data set indices (the training split).
    Returns:
        (len(indices),) float64 losses.
    """
    from omnissl.objectives.base import MaskedPrediction, draw_mask
    from omnissl.train.data import fixed_batches, make_loader, step_generator

    if getattr(objective, "uses_labels", False):
        raise OmnisslError("--by loss scores samples with a pre-training objective; this run's objective learns "
                           "from labels (a fine-tuning run)")
    objective.eval()
    batched = isinstance(objective, MaskedPrediction)
    size = batch_size if batched else 1
    total = np.zeros(len(indices))
    for k in range(masks):
        start = 0
        for b, batch in enumerate(make_loader(tokens, fixed_batches(indices, size), 0)):
            batch = tokens.modality.on_device(batch.to(device))
            generator = step_generator(seed, SELECT_STREAM, k, b, device=device)
            mask = draw_mask(objective, masker, batch, generator)
            if batched:
                losses = _per_sample_hidden_loss(objective, batch, mask)
            else:
                losses = objective(batch, mask).loss.float().reshape(1)
            total[start:start + len(losses)] += losses.double().cpu().numpy()
            start += len(losses)
    scores = total / masks
    if not np.isfinite(scores).all():
        bad = indices[~np.isfinite(scores)][:5].tolist()
        raise DataError(f"the objective's loss is not finite for samples {bad}; check those samples")
    return scores


def _per_sample_hidden_loss(objective: Any, batch: Any, mask: Any) -> torch.Tensor:
    """(B,) each sample's masked-prediction loss: per stream, the mean per-token loss over the
    sample's real hidden tokens, weighted and summed as ``MaskedPrediction.hidden_loss`` does."""
    from omnissl.objectives.base import normalize_per_token, repeat_batch
    from omnissl.tokens import gather_rows

    out = objective(batch, mask)
    copies = objective.masks_per_sample
    expanded = repeat_batch(batch, copies)
    real = (~mask.hidden_pad).float()  # [R, M], R = B * copies
    rows, width = real.shape
    total = torch.zeros(rows, device=real.device)
    for stream in objective.streams:
        pred = out.predictions[stream.name]  # [R, M, P]
        target = gather_rows(expanded.target(stream.name), mask.hidden_idx)  # [R, M, T]
        if objective.norm_target and stream.normalize:
            target = normalize_per_token(target.float())[0]
        per_token = stream.loss(pred.flatten(0, 1), target.flatten(0, 1)).float().reshape(rows, width)
        total += stream.weight * (per_token * real).sum(1) / real.sum(1).clamp(min=1)
    return total.reshape(-1, copies).mean(1)  # the masks of one sample averaged


def select(run_dir: Path, by: Method, keep: float, seed: int = 0, end: Literal["hard", "easy"] = "hard",
           registry: Any = None, masks: int = MASKS) -> Selection:
    """Choose ``keep`` of the training split of ``run_dir``'s data set.

    The training split is the run's own (``data.split``, ``data.val_fraction``, its seed), so
    no held-out sample is ever selected and the probes stay comparable.
    """
    from omnissl.build import build_all
    from omnissl.eval.probe import encode
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_yaml, validate
    from omnissl.train.checkpoint import LAST, load_checkpoint
    from omnissl.train.data import TokenDataset, held_out_split
    from omnissl.train.loop import pick_device, split_seed

    if by not in ("loss", "redundancy", "random"):
        raise OmnisslError(f"--by must be loss, redundancy or random, got {by!r}")
    keep_count(keep, 1)  # a wrong fraction is refused before anything is built
    registry = registry or get_registry()
    recipe_path = Path(run_dir) / "recipe.yaml"
    if not recipe_path.is_file():
        raise OmnisslError(f"{run_dir} is not a run folder: it has no recipe.yaml (was it written by omnissl train?)")
    raw, text = load_yaml(recipe_path)
    recipe = validate(raw, registry, str(recipe_path), text)
    state = load_checkpoint(Path(run_dir) / "checkpoints" / LAST)
    torch.manual_seed(recipe.train.seed)
    parts = build_all(recipe, registry)
    parts.objective.load_state_dict(state["model"])  # the whole model: --by loss needs the decoder too
    train_idx = held_out_split(parts.dataset, recipe.get("data", "val_fraction", 0.1), split_seed(recipe),
                               recipe.get("data", "split", "auto")).train
    n_keep = keep_count(keep, len(train_idx))
    device = pick_device(recipe.train.device)
    tokens = TokenDataset(parts.dataset, parts.modality)
    info: dict[str, Any] = {"run": str(run_dir), "by": by, "keep": keep, "seed": seed, "train_samples": len(train_idx),
                            "kept": n_keep}
    if by == "random":
        chosen = select_random(len(train_idx), n_keep, seed)
    elif by == "loss":
        scores = loss_scores(parts.objective.to(device), parts.masker, tokens, train_idx,
                             recipe.probe.batch_size, seed, device, masks)
        chosen = select_by_score(scores, n_keep, end)
        info.update(end=end, masks=masks, kept_loss_range=[float(scores[chosen].min()), float(scores[chosen].max())],
                    all_loss_range=[float(scores.min()), float(scores.max())])
    else:
        pool = recipe.probe.pool or parts.modality.readout
        features = encode(parts.objective.encoder.to(device), tokens, train_idx, recipe.probe.batch_size, device, pool)
        scores = redundancy_scores(features, seed)
        chosen = select_by_score(scores, n_keep, "easy")
        info.update(cluster_size=CLUSTER_SIZE, max_kept_similarity=float(scores[chosen].max()))
    indices = np.sort(train_idx[chosen])
    ids, kind = sample_ids(parts.dataset)
    return Selection(indices, [ids[i] for i in indices], kind, info)


def subset_text(selection: Selection, command: str) -> str:
    """The subset file: comment lines (the command, the id kind), then one id a line."""
    head = [f"# {command}", f"# ids: {selection.id_kind}",
            f"# {len(selection.ids)} of {selection.info['train_samples']} training samples"]
    return "\n".join(head + selection.ids) + "\n"


def read_subset(path: Path) -> tuple[list[str], str | None]:
    """(ids, id kind from the ``# ids:`` line or None) of a subset file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"data.subset: cannot read {path}: {exc.strerror or exc}") from None
    kind = None
    ids = []
    for line in lines:
        line = line.strip()
        if line.startswith("#"):
            if line[1:].strip().startswith("ids:"):
                kind = line.split(":", 1)[1].strip()
        elif line:
            ids.append(line)
    return ids, kind


def restrict_to_subset(dataset: Any, train_idx: Sequence[int], path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The training indices restricted to the samples a subset file lists (``data.subset``).

    Held-out samples are not touched (the caller keeps its held-out split). Every listed id
    must be a training sample of ``dataset``: an unknown id or a held-out one is an error naming
    the file, because the subset was then chosen on other data or with another split.

    Returns:
        (sorted training indices, what to record in data.json: file, SHA-256, counts).
    """
    path = Path(path)
    ids, kind = read_subset(path)
    if not ids:
        raise DataError(f"data.subset: {path} lists no samples")
    own, own_kind = sample_ids(dataset)
    kind = kind or own_kind
    if kind == "sample_ids":
        if own_kind != "sample_ids":
            raise DataError(f"data.subset: {path} lists sample ids, and this data set has none (its samples are "
                            f"known by index); choose the subset on this data set")
        position = {sample: i for i, sample in enumerate(own)}
        unknown = [i for i in ids if i not in position]
        listed = np.array([position[i] for i in ids if i in position], dtype=np.int64)
    elif kind == "indices":
        unknown = [i for i in ids if not i.isdigit() or int(i) >= len(dataset)]
        listed = np.array([int(i) for i in ids if i.isdigit() and int(i) < len(dataset)], dtype=np.int64)
    else:
        raise DataError(f"data.subset: {path} says '# ids: {kind}'; it must be sample_ids or indices")
    if unknown:
        raise DataError(f"data.subset: {path} lists {len(unknown)} sample(s) this data set does not have (first: "
                        f"{unknown[:3]}; {len(dataset)} samples, known by {own_kind}); choose the subset on the "
                        f"data set this recipe trains on")
    listed = np.unique(listed)
    train_idx = np.asarray(train_idx)
    held_out = np.setdiff1d(listed, train_idx)
    if len(held_out):
        raise DataError(f"data.subset: {path} lists {len(held_out)} sample(s) of the held-out split (first: "
                        f"{[own[i] for i in held_out[:3]]}); the subset was chosen with another split: keep "
                        f"data.split, data.val_fraction and data.split_seed (or train.seed) as in the run it was "
                        f"selected from")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return listed, {"subset": str(path), "subset_sha256": digest, "subset_samples": int(len(listed)),
                    "train_before_subset": int(len(train_idx))}
