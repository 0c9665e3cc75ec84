"""`omnissl export --to safetensors` for every modality, and `omnissl.load_encoder` back: the same
features as the run folder gives, from the file alone, with no pickle and no run folder."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import PretrainedEncoder, load_encoder
from omnissl.build import build_dataset
from omnissl.cli import main
from omnissl.errors import OmnisslError
from omnissl.eval.run import load_run, run_features
from omnissl.plugins import get_registry

# A tiny encoder and objective, two steps, no probes or plots: the export is what is tested.
TINY = ["train.steps=2", "encoder.size=tiny", "encoder.depth=1", "encoder.dim=32", "encoder.heads=2",
        "objective.decoder_dim=32", "objective.decoder_depth=1", "objective.decoder_heads=2",
        "optim.warmup_steps=1", "probe.enabled=false", "viz.enabled=false", "train.log_every=1"]


def demos(cache: Path) -> dict[str, list[str]]:
    """Each plugin's demo recipe with small data (as each plugin's own train tests make it)."""
    return {
        "image": ["image/mae-digits", "train.batch_size=16"],
        "eeg": ["eeg/mae-demo", "train.batch_size=16"],
        "molecule": ["molecule/mae-demo", "data.files=[cdk2.sdf]", "data.label_column=null", "data.task=null",
                     f"data.cache_dir={cache}", "data.workers=1", "train.batch_size=8"],
        "splat": ["splat/mae-demo", "data.per_class=3", "data.num_gaussians=96", "data.min_points=64",
                  "modality.num_points=64", "modality.num_groups=8", "modality.group_size=8",
                  "modality.embed_hidden=16", f"data.cache_dir={cache}", "train.batch_size=4"],
        "ct": ["ct/mae-demo", "data.n=6", "data.shape=[24,24,24]", "data.real_volumes=false",
               "modality.crop_size=16", "modality.patch_size=8", f"data.cache_dir={cache}", "data.val_fraction=0.2",
               "train.batch_size=2"],
        "audio": ["audio/mae-demo", "data.voices=[en-us,en+f4]", "data.speeds=[160]", "data.pitches=[50]",
                  f"data.cache_dir={cache}", "train.batch_size=8"],
    }


MODALITIES = ["image", "eeg", "molecule", "splat", "ct", "audio"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-cache")


def train_tiny(modality: str, root: Path, cache: Path) -> Path:
    recipe, *overrides = demos(cache)[modality]
    out = root / f"run-{modality}"
    assert main(["train", recipe, *TINY, *overrides, "--out", str(out)]) in (0, None)
    return out


def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of unpickling fail, so a load that tries one fails loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("load_encoder unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, read by hand: 8-byte length, then JSON."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])


@pytest.mark.parametrize("modality", MODALITIES)
def test_safetensors_export_round_trips(modality: str, tmp_path: Path, cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run = train_tiny(modality, tmp_path, cache)
    out = tmp_path / "encoder.safetensors"
    assert main(["export", str(run), "--to", "safetensors", "--out", str(out)]) == 0
    header = safetensors_header(out)
    meta = header["__metadata__"]
    assert meta["format"] == "omnissl-encoder" and json.loads(meta["modality"])["name"] == modality
    assert json.loads(meta["encoder"])["dim"] == 32
    recipe, _, trained = load_run(run, get_registry())
    assert set(header) - {"__metadata__"} == set(trained.state_dict())  # every weight, nothing else
    run_files = json.loads(meta["run_files"])
    if modality == "audio":  # the per-run log-mel normalisation travels with the weights
        stats = run_files["audio_stats.json"]
        assert stats == json.loads((run / "audio_stats.json").read_text()) and stats["std"] > 0
    if modality == "eeg":  # and the run's channels (identities of channels known by index, montages)
        assert run_files["eeg_channels.json"]["montages"] == [["A1", "A2", "FCC3h", "CCP3h", "FCC4h", "CCP4h"]]
    assert "data.json" not in run_files and "probe.json" not in run_files  # the core's reports stay behind
    dataset = build_dataset(recipe, get_registry())
    expected = run_features(run, dataset, pool="mean_max")  # the run folder's own path (batched where it is)

    shutil.rmtree(run)  # no run folder from here on
    with monkeypatch.context() as patch:
        no_unpickling(patch)
        encoder = load_encoder(out)
    assert isinstance(encoder, PretrainedEncoder) and not encoder.training
    features = encoder.features(dataset, batch_size=32, pool="mean_max")
    assert features.shape == expected.shape == (len(dataset), 64)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    samples = [dataset[i] for i in range(3)]
    with torch.no_grad():
        default = encoder(samples)  # the modality's readout
        tokens = encoder(samples, pool="none")
        batch = encoder.prepare(samples)
        again = encoder(batch, pool=encoder.readout)  # a ready TokenBatch
    readout = encoder.readout
    assert readout == getattr(encoder.modality, "readout", "mean")
    width = 64 if readout == "mean_max" else 32
    np.testing.assert_allclose(default.numpy(), features[:3, :width] if readout != "max" else features[:3, 32:],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(again.numpy(), default.numpy(), rtol=1e-6, atol=1e-6)
    assert tokens.shape[:2] == batch.pad.shape and tokens.shape[2] == 32
    assert not tokens[batch.pad].any()  # padding rows are zero


def test_loading_errors_name_the_file(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = train_tiny("image", tmp_path, cache)
    with pytest.raises(OmnisslError, match=r"weights.py.*not an omnissl encoder export.*safetensors"):
        (tmp_path / "weights.py").write_text("print('no')\n")
        load_encoder(tmp_path / "weights.py")
    raw = run / "checkpoints" / "encoder.safetensors"  # the run's own weights: no recipe sections
    with pytest.raises(OmnisslError, match=r"encoder.safetensors is not an omnissl encoder export.*--to safetensors"):
        load_encoder(raw)
    with pytest.raises(OmnisslError, match=r"missing.safetensors does not exist"):
        load_encoder(tmp_path / "missing.safetensors")
    out = tmp_path / "digits.safetensors"
    assert main(["export", str(run), "--to", "safetensors", "--out", str(out)]) == 0
    # the plugin of its modality is not installed: the error names the file and what to install
    registry = get_registry()
    table = dict(registry.components["modalities"])
    table.pop("image")
    monkeypatch.setitem(registry.components, "modalities", table)
    with pytest.raises(OmnisslError, match=r"digits.safetensors holds an encoder of modality 'image'.*install "
                                           r"omnissl-image"):
        load_encoder(out)


def test_wrong_exporter_names_the_modality_and_what_to_use(tmp_path: Path, cache: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    run = train_tiny("molecule", tmp_path, cache)
    capsys.readouterr()
    assert main(["export", str(run), "--to", "timm", "--out", str(tmp_path / "vit.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "modality 'molecule'" in err and "--to timm takes image runs" in err and "--to safetensors" in err
    assert not (tmp_path / "vit.safetensors").exists()


def test_the_runs_data_set_is_rebuilt_from_the_export(tmp_path: Path, cache: Path) -> None:
    run = train_tiny("image", tmp_path, cache)
    out = tmp_path / "digits.safetensors"
    assert main(["export", str(run), "--to", "safetensors", "--out", str(out)]) == 0
    encoder = load_encoder(out)
    assert encoder.header["data"]["name"] == "digits" and encoder.header["plugin"]["distribution"] == "omnissl-image"
    dataset = encoder.dataset()  # the carried data section, its core keys (val_fraction...) left out
    assert len(dataset) == 1797
    np.testing.assert_allclose(encoder.features([dataset[0], dataset[1]]),
                               run_features(run, [dataset[0], dataset[1]], pool=encoder.readout), rtol=1e-5, atol=1e-6)
    with pytest.raises(OmnisslError, match=r"digits.safetensors: cannot build data set 'digits'.*no_such_option"):
        encoder.dataset(no_such_option=1)
