"""Streaming shards: every plugin's demo samples written by `omnissl shard` come back as the same
samples (one by one and in batched reads), tokens, labels, groups and held-out split; training from
them runs and writes the plugin's side files; a run killed with SIGKILL resumes from them exactly;
bad shard folders get errors that name them."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from omnissl.build import build_dataset, build_modality
from omnissl.cli import main
from omnissl.datasets import codec, read_stacks, stack_samples
from omnissl.datasets.shards import ShardDataset
from omnissl.errors import DataError, OmnisslError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.shards import write_shards
from omnissl.train import train
from omnissl.train.data import TokenDataset, held_out_split

# Each plugin's demo recipe, made tiny (a few samples, 2 training steps); "{cache}" is a fresh cache folder.
DEMOS = {
    "image": ("image/mae-digits", ["train.batch_size=32"]),
    "audio": ("audio/mae-demo", ["data.voices=[en-us,en+f4]", "data.speeds=[160]", "data.pitches=[50]",
                                 "data.cache_dir={cache}", "train.batch_size=8"]),
    "ct": ("ct/mae-demo", ["data.n=4", "data.shape=[32,32,32]", "data.real_volumes=false", "data.cache_dir={cache}",
                           "train.batch_size=2"]),
    "ecg": ("ecg/mae-demo", ["data.sources=[ecgprocess]", "data.cache_dir={cache}", "train.batch_size=2"]),
    "eeg": ("eeg/mae-demo", ["train.batch_size=16"]),
    "molecule": ("molecule/mae-demo", ["data.files=[cdk2.sdf]", "data.label_column=Cluster", "data.task=null",
                                       "data.workers=1", "data.cache_dir={cache}", "train.batch_size=8"]),
    "splat": ("splat/mae-demo", ["data.per_class=2", "data.num_gaussians=600", "data.cache_dir={cache}",
                                 "train.batch_size=4"]),
}
RUN_FILES = {"audio": {"audio_stats.json"}, "eeg": {"eeg_channels.json"}}  # each plugin's data sets' run_files()
SHORT = ["train.steps=2", "train.log_every=1", "train.val_every=2", "train.ckpt_every=2", "optim.warmup_steps=1",
         "probe.enabled=false", "viz.enabled=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plugin-caches")


def demo(modality: str, cache: Path, *extra: str):
    name, overrides = DEMOS[modality]
    return load_recipe(name, [o.format(cache=cache / modality) for o in overrides] + list(extra), get_registry())


def assert_same(a, b, where: str) -> None:
    """Equal tokens (tensors exactly, dtypes too), dicts, lists and plain values."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), (where, a, b)


def unstacked(sample, k: int):
    """Row ``k`` of a stacked sample (omnissl.datasets.Stack): each array replaced by its k-th row."""
    layout, arrays = codec.encode(sample, "stacked sample", finite=False)
    return codec.decode(layout, [array[k, ...] for array in arrays])


@pytest.mark.parametrize("modality", sorted(DEMOS))
def test_shards_of_each_plugin_give_its_tokens_split_and_train(modality, cache, tmp_path):
    registry = get_registry()
    recipe = demo(modality, cache)
    source = build_dataset(recipe, registry)
    folder = tmp_path / "shards"
    meta = write_shards(recipe, registry, folder, chunk_bytes="1MB", progress=False)
    assert meta["samples"] == len(source) and meta["modality"] == modality
    from_shards = demo(modality, cache, "data.name=shards", f"data.path={folder}")
    shards = build_dataset(from_shards, registry)

    # what the core and the probes read of a data set
    assert len(shards) == len(source) and shards.sample_ids.tolist() == list(range(len(source)))
    for name in ("labels", "groups", "split", "scaffolds", "source_files", "source_rows"):
        mine, theirs = getattr(shards, name), getattr(source, name, None)
        assert (mine is None) == (theirs is None), name
        if theirs is not None:
            np.testing.assert_array_equal(mine, np.asarray(theirs).astype(mine.dtype), err_msg=name)
    assert shards.classes == (None if source.classes is None else [str(c) for c in source.classes])
    split_mode = recipe.get("data", "split", "auto")
    ours, theirs = (held_out_split(d, 0.2, 0, split_mode) for d in (shards, source))
    assert ours.train.tolist() == theirs.train.tolist() and ours.held_out.tolist() == theirs.held_out.tolist()
    assert ours.info == theirs.info

    # the same samples, so the same tokens: per sample (augmented and not) and through the batched fetch
    model = build_modality(recipe, registry)
    chosen = np.unique(np.linspace(0, len(source) - 1, 12).astype(int)).tolist()
    for i in chosen:
        assert_same(shards[i], source[i], f"{modality} sample {i}")
        for seed in (None, 7 + i):
            rng = lambda: None if seed is None else np.random.default_rng(seed)  # noqa: E731
            assert_same(model.tokenize(shards[i], rng()), model.tokenize(source[i], rng()), f"{modality} tokens {i}")
    keys = [(i, 100 + i) for i in chosen[:6]]
    batched = TokenDataset(shards, model).__getitems__(keys), TokenDataset(source, model).__getitems__(keys)
    assert_same(*batched, f"{modality} batch")
    # the batched reads the loader and batched tokenisers use: straight from the chunks (several: 1 MB each)
    reversed_ = chosen[::-1]
    assert_same(shards.get_samples(reversed_), [source[i] for i in reversed_], f"{modality} get_samples")
    stacks = read_stacks(shards, reversed_)  # samples alike but for their arrays' values, stacked
    assert sorted(row for stack in stacks for row in stack.rows.tolist()) == list(range(len(reversed_)))
    for stack in stacks:
        for k, row in enumerate(stack.rows.tolist()):
            assert_same(unstacked(stack.sample, k), source[reversed_[row]], f"{modality} stack row {row}")
    assert len(stack_samples([source[i] for i in reversed_])) == len(stacks)  # the same grouping, from samples

    # and a run trains from them, with the same data summary
    out = tmp_path / "run"
    train(demo(modality, cache, "data.name=shards", f"data.path={folder}", *SHORT), registry, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    summary = json.loads((out / "data.json").read_text())
    assert summary["samples"] == len(source) and summary["split"]["held_out"] == len(
        held_out_split(source, recipe.get("data", "val_fraction"), 0, split_mode).held_out)
    # and the side files a run on the plugin's own data set keeps (audio_stats.json, eeg_channels.json)
    run_files = source.run_files() if hasattr(source, "run_files") else {}
    assert set(run_files) == RUN_FILES.get(modality, set())
    for name, value in run_files.items():
        assert json.loads((out / name).read_text()) == json.loads(json.dumps(value)), name


def run_cli(out: Path, *args: str, plugins: str = "", plugin_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMNISSL_PLUGINS=plugins, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if plugin_dir is not None:
        env["PYTHONPATH"] = f"{plugin_dir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "omnissl", *args, "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=600)


KILLER = """
    import os
    import signal

    from omnissl import hookimpl

    @hookimpl
    def omnissl_log(step):
        if step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a pre-empted job
"""


def test_run_from_shards_matches_the_map_style_run_and_resumes_exactly_after_sigkill(tmp_path, monkeypatch):
    shards = tmp_path / "shards"
    assert main(["shard", "image/mae-digits", "--out", str(shards)]) == 0
    args = ["image/mae-digits", "encoder.dim=32", "encoder.depth=2", "encoder.heads=2", "objective.decoder_dim=32",
            "objective.decoder_depth=1", "train.batch_size=32", "train.steps=8", "train.ckpt_every=4",
            "train.val_every=4", "train.log_every=1", "optim.warmup_steps=2", "probe.enabled=false",
            "viz.enabled=false", "modality.crop_scale=[0.5,1.0]"]
    from_shards = [*args, "data.name=shards", f"data.path={shards}"]

    def losses(out: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
                for line in (out / "metrics.jsonl").read_text().splitlines()]

    # the same data in the same order: the map-style run's losses, to the last bit
    registry = get_registry()
    train(load_recipe(args[0], args[1:], registry), registry, tmp_path / "map")
    train(load_recipe(args[0], from_shards[1:], registry), registry, tmp_path / "straight")
    assert losses(tmp_path / "straight") == losses(tmp_path / "map")

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "killer.py").write_text(textwrap.dedent(KILLER))
    monkeypatch.setenv("KILL_AT_STEP", "6")
    killed = tmp_path / "killed"
    result = run_cli(killed, "train", *from_shards, plugins="killer", plugin_dir=tmp_path / "plugins")
    assert result.returncode == -9, result.stderr
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    monkeypatch.delenv("KILL_AT_STEP")
    result = run_cli(killed, "train", *from_shards, "--resume")
    assert result.returncode == 0, result.stderr
    # exact against an uninterrupted run in a process like the killed one's: an in-process run
    # may use another torch thread count (an earlier test may have set it), which moves the
    # last bits of CPU reductions
    assert run_cli(tmp_path / "uninterrupted", "train", *from_shards).returncode == 0
    assert losses(killed) == losses(tmp_path / "uninterrupted")
    assert [r["loss"] for r in losses(killed)] == pytest.approx([r["loss"] for r in losses(tmp_path / "straight")],
                                                                rel=1e-5)


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits") / "shards"
    registry = get_registry()
    write_shards(load_recipe("image/mae-digits", [], registry), registry, folder, progress=False)
    return folder


def test_object_store_path_streams_through_the_cache(digit_shards, tmp_path):
    # LitData's local: scheme goes through the object-store path (download, local cache) without a network
    remote = ShardDataset(f"local:{digit_shards}", cache_dir=str(tmp_path / "cache"))
    local = ShardDataset(str(digit_shards))
    assert len(remote) == len(local) == 1797 and remote.labels.tolist() == local.labels.tolist()
    for i in (0, 900, 1796):
        assert_same(remote[i], local[i], f"sample {i}")
    assert any((tmp_path / "cache").rglob("*.bin"))  # the chunk was fetched into the cache


def test_bad_paths_and_folders_are_named(digit_shards, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data.path {missing}: no such folder"):
        ShardDataset(str(missing))
    with pytest.raises(DataError, match="holds no LitData index.json"):
        ShardDataset(str(tmp_path))
    with pytest.raises(DataError, match=r"data.path ftp://host/x: LitData cannot read ftp://"):
        ShardDataset("ftp://host/x")
    with pytest.raises(DataError, match=f"data.path local:{missing}: .*index.json"):
        ShardDataset(f"local:{missing}", cache_dir=str(tmp_path / "cache"))
    # LitData chunks of someone else's, without omnissl's description
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "index.json").write_text((digit_shards / "index.json").read_text())
    with pytest.raises(DataError, match="has no omnissl.json"):
        ShardDataset(str(plain))
    # a pickle leaf would run code when read: refused before anything is read
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in os.listdir(digit_shards):
        (evil / name).write_bytes((digit_shards / name).read_bytes())
    index = json.loads((evil / "index.json").read_text())
    index["config"]["data_format"] = ["str", "pickle"]
    (evil / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"serializers \['pickle'\]"):
        ShardDataset(str(evil))
    # the recipe's modality must be the shards'; other data options must be the ones written
    registry = get_registry()
    recipe = tmp_path / "splat.yaml"
    raw = load_recipe("splat/mae-demo", [], registry).raw
    raw["data"] = {"name": "shards", "path": str(digit_shards)}
    recipe.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match="holds samples of modality 'image', but modality.name is 'splat'"):
        build_dataset(load_recipe(str(recipe), [], registry), registry)
    with pytest.raises(DataError, match="has no option 'root'"):
        ShardDataset(str(digit_shards), root="/data")
    assert main(["shard", "image/mae-digits", "--out", str(digit_shards)]) == 2  # never over shards by accident


def test_samples_round_trip_and_what_shards_cannot_hold_is_refused():
    @dataclasses.dataclass
    class Local:
        x: int

    from omnissl_molecule.features import MoleculeArrays

    molecule = MoleculeArrays(np.zeros((2, 7), np.uint8), np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32),
                              np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.float32),
                              True, "CC")
    sample = {"a": np.arange(3, dtype=">i4"), "scalar": np.float32(2.5), "zero_d": np.array(1.5),
              "t": torch.arange(4.0).reshape(2, 2), "names": ["Fz", "Cz"], "pair": (1, "x"), "none": None,
              "flag": True, "labels": np.array(["a", "bc"]), "nested": {"m": molecule}, "path": str(Path(__file__))}
    layout, arrays = codec.encode(sample, "test sample")
    back = codec.decode(layout, arrays)
    assert back["a"].dtype == np.dtype("int32") and back["a"].tolist() == [0, 1, 2]  # native byte order
    assert type(back["scalar"]) is np.float32 and back["zero_d"].shape == () and back["zero_d"] == 1.5
    assert torch.equal(back["t"], sample["t"]) and back["pair"] == (1, "x") and back["names"] == ["Fz", "Cz"]
    assert back["labels"].tolist() == ["a", "bc"] and back["path"] == str(Path(__file__))  # a string, not the file
    assert_same(back["nested"]["m"], molecule, "molecule")
    for bad, match in (({"s": {1, 2}}, "builtins.set"), ({"o": np.array([object()])}, "dtype object"),
                       ({"x": np.array([1.0, np.nan])}, "NaN or infinity"), ({"c": Local(1)}, "omnissl and its plugins"),
                       ({1: 2}, "not a string")):
        with pytest.raises(DataError, match=match):
            codec.encode(bad, "test sample")
    evil = json.dumps({"x": ["c", "os:system", {}]})
    with pytest.raises(DataError, match="omnissl and its plugins"):
        codec.decode(evil, [])
    with pytest.raises(OmnisslError):
        codec.decode(json.dumps({"x": ["a", 3]}), [])
