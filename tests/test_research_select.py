"""omnissl select: per-sample losses, near-duplicates, determinism, and data.subset's restriction."""

import numpy as np
import pytest
import torch

from omnissl.build import build_all
from omnissl.cli import main
from omnissl.errors import DataError
from omnissl.objectives.base import draw_mask
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.research.select import (_per_sample_hidden_loss, read_subset, redundancy_scores, restrict_to_subset,
                                     select_by_score)
from omnissl.tokens import collate_tokens
from omnissl.train import train
from omnissl.train.data import step_generator

TINY = ["encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=16", "optim.warmup_steps=1",
        "train.log_every=1", "probe.enabled=false", "viz.enabled=false", "train.val_batches=1"]


def recipe(*overrides):
    return load_recipe("image/mae-digits", [*TINY, *overrides], get_registry())


@pytest.mark.parametrize("objective", ["mae", "simmim"])
def test_per_sample_losses_average_to_the_batch_loss(objective):
    rec = recipe(*(["objective={name: simmim}"] if objective == "simmim" else []))
    torch.manual_seed(0)
    parts = build_all(rec, get_registry())
    batch = collate_tokens([parts.modality.tokenize(parts.dataset[i], None) for i in range(8)])
    mask = draw_mask(parts.objective, parts.masker, batch, step_generator(0, 3, 0, 0))
    with torch.no_grad():
        each = _per_sample_hidden_loss(parts.objective.eval(), batch, mask)
        whole = parts.objective(batch, mask).loss
    assert each.shape == (8,) and bool((each > 0).all())
    # every digit has 16 tokens and hides 8: the batch loss is the mean of the samples' losses
    torch.testing.assert_close(each.mean(), whole.float(), rtol=1e-5, atol=1e-6)


def test_redundancy_keeps_one_of_each_near_duplicate_group():
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(30, 16))
    copies = distinct[[0, 0, 1, 5]] + 1e-4 * rng.normal(size=(4, 16))  # near-duplicates of 0, 0, 1, 5
    features = np.concatenate([distinct, copies])
    scores = redundancy_scores(features, seed=0, cluster_size=10)
    kept = select_by_score(scores, 30, "easy")
    groups = [{0, 30, 31}, {1, 32}, {5, 33}]
    assert all(len(g & set(kept.tolist())) == 1 for g in groups)  # one representative each
    assert sorted(scores)[-4] > 0.99 > sorted(scores)[-5]  # four near-duplicates, the rest far apart
    np.testing.assert_array_equal(scores, redundancy_scores(features, seed=0, cluster_size=10))


class Named:
    """A data set that knows its samples by id."""

    def __init__(self, n):
        self.sample_ids = [f"rec{i:03d}" for i in range(n)]

    def __len__(self):
        return len(self.sample_ids)


def test_subset_restricts_the_training_split_with_clear_errors(tmp_path):
    train_idx = np.array([0, 1, 2, 4, 5, 7])
    path = tmp_path / "subset.txt"
    path.write_text("# omnissl select ...\n# ids: indices\n5\n1\n\n1\n")
    kept, info = restrict_to_subset(list(range(9)), train_idx, path)
    assert kept.tolist() == [1, 5] and info["subset_samples"] == 2 and len(info["subset_sha256"]) == 64
    path.write_text("# ids: indices\n1\n3\n")
    with pytest.raises(DataError, match=r"1 sample\(s\) of the held-out split \(first: \['3'\]\)"):
        restrict_to_subset(list(range(9)), train_idx, path)
    path.write_text("1\n12\nabc\n")
    with pytest.raises(DataError, match=r"2 sample\(s\) this data set does not have \(first: \['12', 'abc'\]"):
        restrict_to_subset(list(range(9)), train_idx, path)
    named = Named(9)
    path.write_text("# ids: sample_ids\nrec004\nrec000\n")
    assert restrict_to_subset(named, train_idx, path)[0].tolist() == [0, 4]
    path.write_text("rec004\nrec100\n")
    with pytest.raises(DataError, match="rec100"):
        restrict_to_subset(named, train_idx, path)
    path.write_text("# ids: sample_ids\nrec004\n")
    with pytest.raises(DataError, match="has none"):
        restrict_to_subset(list(range(9)), train_idx, path)
    path.write_text("# nothing\n")
    with pytest.raises(DataError, match="lists no samples"):
        restrict_to_subset(list(range(9)), train_idx, path)


def test_select_is_deterministic_and_keeps_training_samples(tmp_path):
    run = tmp_path / "run"
    train(recipe("train.steps=2", "train.ckpt_every=2", "data.val_fraction=0.8"), get_registry(), run)
    from omnissl_image.datasets import DigitsDataset

    digits = DigitsDataset()
    n_train = 1797 - round(0.8 * 1797)
    outputs = {}
    for by, seeds in (("random", (0, 0, 1)), ("loss", (0, 0)), ("redundancy", (0, 0))):
        for name, seed in zip("abc", seeds):
            out = tmp_path / f"{by}-{name}.txt"
            assert main(["select", str(run), "--by", by, "--keep", "0.3", "--seed", str(seed), "--out", str(out)]) == 0
            outputs[by, name] = read_subset(out)
        ids, kind = outputs[by, "a"]
        assert kind == "indices" and len(ids) == round(0.3 * n_train)
        assert outputs[by, "a"] == outputs[by, "b"]  # the same seed chooses the same samples
        # every kept sample is a training sample of the run's split: data.subset accepts the file
        from omnissl.train.data import held_out_split

        train_idx = held_out_split(digits, 0.8, 0, "auto").train
        kept, _ = restrict_to_subset(digits, train_idx, tmp_path / f"{by}-a.txt")
        assert sorted(kept.tolist()) == sorted(int(i) for i in ids)
    assert outputs["random", "a"] != outputs["random", "c"]
    assert outputs["loss", "a"] != outputs["random", "a"] != outputs["redundancy", "a"]
    header = (tmp_path / "loss-a.txt").read_text().splitlines()[:3]
    assert header[0] == f"# omnissl select {run} --by loss --keep 0.3 --seed 0 --end hard"
    assert header[2] == f"# {round(0.3 * n_train)} of {n_train} training samples"


def test_subset_run_trains_on_the_listed_samples_only(tmp_path, monkeypatch):
    import json

    import omnissl.train.data as data
    from omnissl_image.datasets import DigitsDataset

    from omnissl.train.loop import split_seed

    seen = []
    original = data.SeededBatchSampler.batch

    def batch(self, b):
        chosen = original(self, b)
        seen.extend(index for index, _ in chosen)
        return chosen

    monkeypatch.setattr(data.SeededBatchSampler, "batch", batch)
    rec = recipe("train.steps=3", "train.ckpt_every=3")
    train_idx = data.held_out_split(DigitsDataset(), rec.get("data", "val_fraction"), split_seed(rec), "auto").train
    keep = sorted(np.random.default_rng(0).choice(train_idx, 16, replace=False).tolist())  # one batch's worth
    path = tmp_path / "s.txt"
    path.write_text("# ids: indices\n" + "\n".join(map(str, keep)) + "\n")
    run = tmp_path / "run"
    train(recipe("train.steps=3", "train.ckpt_every=3", f"data.subset={path}"), get_registry(), run)
    assert len(seen) >= 3 * 16 and set(seen) == set(keep)  # batches of 16 from 16 samples: all of them, only them
    split = json.loads((run / "data.json").read_text())["split"]
    assert (split["train"], split["subset_samples"], split["train_before_subset"]) == (16, 16, len(train_idx))
    assert split["held_out"] == len(DigitsDataset()) - len(train_idx)  # validation unchanged
