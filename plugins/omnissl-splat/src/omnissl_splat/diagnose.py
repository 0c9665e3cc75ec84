"""What a splat run learned, term by term: ``python -m omnissl_splat.diagnose RUN_DIR``.

The core logs one loss per target stream, so ``metrics.jsonl`` holds only the weighted sum of
:class:`~omnissl_splat.losses.GaussianGroupLoss`'s terms. This reads a run folder and reports,
on its held-out objects:

* each term for the pre-trained model next to a predictor that knows nothing about the hidden
  group (every hidden group predicted as the mean hidden group of the batch): a term that does
  not beat it is not being learned;
* how much of each object's mean colour and mean Gaussian scale a ridge regression recovers
  from the pooled encoder features (held-out R^2), pre-trained vs randomly initialised:
  object-wide nuisances that the features spend themselves on (and a k-NN probe then matches on).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnissl import collate_tokens
from omnissl.build import build_masker, build_objective
from omnissl.eval.probe import encode
from omnissl.eval.run import probe_setup
from omnissl.plugins import get_registry
from omnissl.tokens import gather_rows
from omnissl.train.data import TokenDataset, step_generator
from omnissl_splat.ply import ATTRIBUTES

NUISANCES = ("colour", "scale")


@torch.no_grad()
def loss_terms(objective: Any, masker: Any, tokens: TokenDataset, indices: np.ndarray,
               seed: int = 0, max_objects: int = 256) -> dict[str, dict[str, float]]:
    """Mean of each loss term over the hidden groups of the first ``max_objects`` of ``indices``
    (one un-augmented batch).

    Returns:
        ``{"model": {term: value}, "mean group": {term: value}}``.
    """
    objective.eval()
    modality = tokens.modality
    batch = modality.on_device(collate_tokens([tokens[(int(i), None)] for i in indices[:max_objects]]))
    mask = masker(batch, step_generator(seed, 1, 0))
    stream = objective.streams[0].name
    pred = objective(batch, mask).predictions[stream]  # [B, M, k*14]
    target = gather_rows(batch.target(stream), mask.hidden_idx)
    real = ~mask.hidden_pad
    pred, target = pred[real], target[real]  # [M_real, k*14]
    trivial = target.mean(0, keepdim=True).expand_as(target)
    return {name: {term: float(v.mean()) for term, v in modality.loss.terms(p, target).items()}
            for name, p in (("model", pred), ("mean group", trivial))}


def nuisance_r2(encoder: torch.nn.Module, tokens: TokenDataset, train_idx: np.ndarray, test_idx: np.ndarray,
                pool: str = "mean") -> dict[str, float]:
    """Held-out R^2 of a ridge regression from pooled features to each object's mean colour and scale."""
    from sklearn.linear_model import RidgeCV

    device = torch.device("cpu")
    features = {name: encode(encoder, tokens, idx, 64, device, pool) for name, idx in
                (("train", train_idx), ("test", test_idx))}
    out = {}
    for nuisance in NUISANCES:
        means = {name: np.stack([np.asarray(tokens.dataset[int(i)]["splats"])[:, ATTRIBUTES[nuisance]].mean(0)
                                 for i in idx]) for name, idx in (("train", train_idx), ("test", test_idx))}
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(features["train"], means["train"])
        out[nuisance] = float(model.score(features["test"], means["test"]))
    return out


def diagnose(run_dir: Path) -> dict[str, Any]:
    """Loss terms and nuisance R^2 of a run folder written by ``omnissl train``, on the probes'
    split and against the probes' random encoder."""
    registry = get_registry()
    setup = probe_setup(run_dir, registry)
    recipe, tokens = setup.recipe, setup.tokens
    objective = build_objective(recipe, registry, setup.pretrained, tokens.modality)
    objective.load_state_dict(setup.checkpoint["model"])
    return {"terms": loss_terms(objective, build_masker(recipe, registry), tokens, setup.test_idx, recipe.train.seed),
            "nuisance_r2": {name: nuisance_r2(enc, tokens, setup.train_idx, setup.test_idx, setup.pool)
                            for name, enc in (("pretrained", objective.encoder), ("random", setup.random_init))}}


def format_report(report: dict[str, Any]) -> str:
    terms, r2 = report["terms"], report["nuisance_r2"]
    lines = [f"{'held-out loss term':<20}{'model':>12}{'mean group':>12}"]
    lines += [f"{term:<20}{terms['model'][term]:>12.4f}{terms['mean group'][term]:>12.4f}" for term in terms["model"]]
    lines.append(f"{'R^2 from features':<20}{'pretrained':>12}{'random':>12}")
    lines += [f"{'object ' + n:<20}{r2['pretrained'][n]:>12.2f}{r2['random'][n]:>12.2f}" for n in NUISANCES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omnissl_splat.diagnose", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by omnissl train")
    print(format_report(diagnose(parser.parse_args(argv).run_dir)))


if __name__ == "__main__":
    main()
