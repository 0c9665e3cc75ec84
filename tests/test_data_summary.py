"""What a run says about its data before training (data.json), and what happens without labels."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

TINY = ["encoder.dim=32", "encoder.depth=1", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=32", "optim.warmup_steps=1",
        "train.log_every=1", "viz.num_samples=4", "probe.max_samples=300"]

PLUGIN = """
    import numpy as np

    from omnissl import hookimpl
    from omnissl_image.datasets import DigitsDataset


    class UnlabelledDigits(DigitsDataset):
        \"\"\"The digits without their labels.\"\"\"

        def __init__(self):
            super().__init__()
            self.labels = None


    class DigitsWithTargets(DigitsDataset):
        \"\"\"The digits with three named targets, grouped in writers of 100 samples.\"\"\"

        sample_kind = "image"
        group_kind = "writer"

        def __init__(self):
            super().__init__()
            self.targets = {"digit": self.labels, "odd": self.labels % 2,
                            "ink": self.images.reshape(len(self.images), -1).mean(1).astype(np.float64)}
            self.target_tasks = {"ink": "regression"}
            self.groups = np.array([f"w{i // 100}" for i in range(len(self.images))])
            self.skipped = [("a.png", "truncated: cut at 10 bytes"), ("b.png", "truncated: empty"),
                            ("c.png", "not finite (NaN pixels)")]

        def summary(self):
            return {"files": 1797, "duplicates": 0}


    @hookimpl
    def omnissl_datasets():
        return {"unlabelled_digits": UnlabelledDigits, "digits_with_targets": DigitsWithTargets}
"""


def train(tmp_path: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "summary_sets.py").write_text(textwrap.dedent(PLUGIN))
    env = dict(os.environ, OMNISSL_PLUGINS="summary_sets",
               PYTHONPATH=f"{tmp_path / 'plugins'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    command = [sys.executable, "-m", "omnissl", "train", "image/mae-digits", *TINY, *overrides, "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_a_run_on_unlabelled_data_exits_0_and_says_why_the_probes_were_skipped(tmp_path):
    out = tmp_path / "run"
    result = train(tmp_path, out, "data.name=unlabelled_digits", "train.steps=2", "data.val_fraction=0")
    assert result.returncode == 0, result.stderr
    assert "labels: none (probes will be skipped)" in result.stderr
    assert "probes skipped: the data set has no labels" in result.stdout
    assert "no labels" in json.loads((out / "probe.json").read_text())["skipped"]
    # with nothing held out, the reconstructions are drawn from training samples, and listed
    assert (out / "reconstruction.png").is_file() and "reconstruction.png" in result.stdout
    summary = json.loads((out / "data.json").read_text())
    assert summary["labels"] is None and summary["split"]["held_out"] == 0


def test_the_data_summary_names_samples_skips_labels_groups_split_and_each_target_is_probed(tmp_path):
    out = tmp_path / "run"
    result = train(tmp_path, out, "data.name=digits_with_targets", "train.steps=2")
    assert result.returncode == 0, result.stderr
    printed = result.stderr[:result.stderr.index("step 1/2")]  # said before the first step
    assert "data: digits_with_targets: 1,797 images from 1,797 files" in printed
    assert "skipped 3 (truncated: 2, not finite: 1); first: a.png" in printed
    assert "labels: 10 classes (0 178, 1 182," in printed
    assert "targets: digit (1,797 labelled), odd (1,797 labelled), ink (1,797 labelled)" in printed
    assert "groups: 18 writers" in printed
    summary = json.loads((out / "data.json").read_text())
    assert summary["samples"] == 1797 and summary["files"] == 1797 and summary["duplicates"] == 0
    assert summary["skipped"]["by_reason"] == {"truncated": 2, "not finite": 1}
    assert sum(summary["labels"]["classes"].values()) == 1797
    split = summary["split"]  # auto: the data set has groups, so whole writers are held out
    assert split["train"] + split["held_out"] == 1797 and split["kind"] == "grouped"
    assert (split["train_groups"], split["held_out_groups"], split["groups_on_both_sides"]) == (14, 4, 0)
    assert "(grouped; 14 / 4 writers, 0 on both sides)" in printed
    probe = json.loads((out / "probe.json").read_text())
    assert probe["split"] == split  # the probes are on the same split, and say so
    assert set(probe["targets"]) == {"digit", "odd", "ink"}
    assert probe["targets"]["ink"]["task"] == "regression" and probe["targets"]["ink"]["metric"] == "r2"
    assert probe["targets"]["odd"]["task"] == "classification"
    assert probe["targets"]["digit"]["pretrained"] == {k: probe["pretrained"][k] for k in ("linear", "knn")}
    assert np.isfinite(probe["targets"]["ink"]["baseline"]["linear"])
    assert "target ink:" in result.stdout


def test_sample_metadata_joins_features_back_to_their_source_rows():
    from omnissl.eval.run import sample_metadata

    class Table:
        labels = np.array([1.0, np.nan, 3.0])
        targets = {"logp": np.array([0.5, 1.5, 2.5]), "tpsa": np.array([10.0, np.nan, 30.0])}
        source_files = ["a.csv", "a.csv", "b.csv"]
        source_rows = [1, 3, 1]  # row 2 of a.csv was dropped (max_atoms): nothing shifts

        def __len__(self):
            return 3

    meta = sample_metadata(Table())
    assert set(meta) == {"labels", "source_files", "source_rows", "target:logp", "target:tpsa"}
    assert meta["source_rows"].tolist() == [1, 3, 1] and meta["source_files"][2] == "b.csv"


class Grouped:
    def __init__(self, groups, labels=None, split=None):
        self.groups = np.asarray(groups)
        self.labels = None if labels is None else np.asarray(labels)
        if split is not None:
            self.split = np.asarray(split)
        self.group_kind = "recording"

    def __len__(self):
        return len(self.groups)


def test_a_grouped_split_never_puts_one_group_on_both_sides():
    from omnissl.train.data import held_out_split

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=1000).astype(str)  # 40 recordings of unequal length
    for seed in range(5):
        split = held_out_split(Grouped(groups, labels=rng.integers(0, 3, 1000)), 0.2, seed)
        assert split.info["kind"] == "grouped" and split.info["groups_on_both_sides"] == 0
        assert not set(groups[split.train]) & set(groups[split.held_out])
        assert split.info["held_out_groups"] == 8 and len(split.train) + len(split.held_out) == 1000
    forced = held_out_split(Grouped(groups), 0.2, 0, "random")
    assert forced.info["kind"] == "random" and forced.info["groups_on_both_sides"] > 0  # the leak it prevents


def test_a_given_split_is_respected_and_other_modes_fall_back_or_refuse():
    import pytest

    from omnissl.errors import DataError
    from omnissl.train.data import held_out_split, split_indices

    given = ["train", "test", "train", "test", "train"]
    split = held_out_split(Grouped(["a", "a", "b", "b", "c"], split=given), 0.2, 0)
    assert split.info["kind"] == "given" and split.held_out.tolist() == [1, 3] and split.train.tolist() == [0, 2, 4]
    # one sample per group: a grouped split is a random one; the same indices as before groups existed
    alone = held_out_split(Grouped([str(i) for i in range(50)]), 0.2, 3)
    assert alone.info["kind"] == "random" and alone.held_out.tolist() == split_indices(50, 0.2, 3)[1].tolist()
    # groups that are the classes (one photograph per class): holding out groups holds out classes
    same = held_out_split(Grouped(["x", "x", "y", "y", "z", "z"], labels=[0, 0, 1, 1, 2, 2]), 0.34, 0)
    assert same.info["kind"] == "random" and "coincide with its classes" in same.info["reason"]
    with pytest.raises(DataError, match="no given split"):
        held_out_split(Grouped(["a", "b"]), 0.5, 0, "given")
    with pytest.raises(DataError, match="the data set's split holds \\['val'\\]"):
        held_out_split(Grouped(["a", "b"], split=["train", "val"]), 0.5, 0)

    class Plain:
        def __len__(self):
            return 4
    with pytest.raises(DataError, match="no groups"):
        held_out_split(Plain(), 0.5, 0, "grouped")


def test_a_scaffold_split_keeps_each_scaffold_on_one_side_and_holds_out_the_rare_ones():
    from omnissl.train.data import held_out_split

    class Molecules:
        # scaffold sets of 40, 25, 15, 10, 5, 3, 1, 1 molecules (100 in all)
        scaffolds = np.repeat(["c1ccccc1", "c1ccncc1", "C1CCCCC1", "c1ccc2ccccc2c1", "C1CC1", "c1ccoc1",
                               "C1CCNC1", ""], [40, 25, 15, 10, 5, 3, 1, 1])

        def __len__(self):
            return 100

    split = held_out_split(Molecules(), 0.2, seed=0, mode="scaffold")
    scaffolds = Molecules.scaffolds
    assert split.info["kind"] == "scaffold" and split.info["groups_on_both_sides"] == 0
    assert set(scaffolds[split.train]) == {"c1ccccc1", "c1ccncc1", "C1CCCCC1"}  # 80: the largest sets
    assert len(split.held_out) == 20 and split.info["held_out_groups"] == 5
    assert held_out_split(Molecules(), 0.2, seed=7, mode="scaffold").held_out.tolist() == split.held_out.tolist()
