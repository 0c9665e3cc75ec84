"""`omnissl export --to braindecode`: the encoder as a braindecode model over (batch, channels, times)
windows, equal to the plugin's own tokenisation, and trained by braindecode's EEGClassifier."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import load_encoder
from omnissl.build import build_dataset
from omnissl.cli import main
from omnissl.encoders import TokenEncoder
from omnissl.errors import DataError
from omnissl.eval.run import load_run, run_features
from omnissl.export import export_safetensors
from omnissl.plugins import get_registry
from omnissl_eeg.braindecode import OmnisslEEGEncoder, braindecode_preprocessors
from omnissl_eeg.modality import EEGModality
from omnissl_eeg.sensors import lookup_position

TINY = ["train.steps=2", "encoder.depth=1", "encoder.dim=32", "encoder.heads=2", "objective.decoder_dim=32",
        "objective.decoder_depth=1", "objective.decoder_heads=2", "train.batch_size=16", "optim.warmup_steps=1",
        "probe.enabled=false", "viz.enabled=false", "train.log_every=1"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The EEG demo (real SelfRegulationSCP1 trials, 6 electrodes at 200 Hz), two steps, exported."""
    root = tmp_path_factory.mktemp("eeg-export")
    run = root / "run"
    assert main(["train", "eeg/mae-demo", *TINY, "--out", str(run)]) in (0, None)
    out = root / "scp1.safetensors"
    assert main(["export", str(run), "--to", "braindecode", "--out", str(out)]) == 0
    return run, out


def windows(run: Path, count: int) -> tuple[list[dict], np.ndarray]:
    recipe, _, _ = load_run(run, get_registry())
    dataset = build_dataset(recipe, get_registry())
    samples = [dataset[i] for i in range(count)]
    return samples, np.stack([s["signal"] for s in samples])  # (B, C, T) in microvolts


def test_module_is_the_plugins_tokenisation(exported: tuple[Path, Path]) -> None:
    run, out = exported
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["sfreq"] == 200.0 and info["patch_samples"] == 100 and info["amplitude_scale"] == 10.0
    assert info["training_montages"] == [["A1", "A2", "FCC3h", "CCP3h", "FCC4h", "CCP4h"]]
    assert ["filter", {"l_freq": None, "h_freq": 40.0}] in info["braindecode_preprocessors"]
    samples, x = windows(run, 8)
    names = samples[0]["channels"]
    expected = run_features(run, samples, pool="mean")
    field = OmnisslEEGEncoder.from_export(out, n_outputs=None, ch_names=names, input_unit="field",
                                          n_times=x.shape[-1], sfreq=200.0).eval()
    assert (field.n_chans, field.n_times, field.feature_dim) == (6, 700, 32)
    with torch.no_grad():
        features = field(torch.from_numpy(x))
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-5, atol=1e-5)
    # braindecode's windows are in volts: the default input unit scales them
    volts = OmnisslEEGEncoder.from_export(out, ch_names=names).eval()
    with torch.no_grad():
        from_volts = volts(torch.from_numpy(x.astype(np.float64) * 1e-6).float())
    np.testing.assert_allclose(from_volts.numpy(), expected, rtol=1e-4, atol=1e-4)
    # MNE channel info places them the same way (its own locations here)
    import mne

    info_ = mne.create_info(names, 200.0, "eeg")
    for ch in info_["chs"]:
        ch["loc"][:3] = lookup_position(ch["ch_name"])
    by_info = OmnisslEEGEncoder(out, chs_info=info_["chs"], input_unit="field").eval()
    with torch.no_grad():
        np.testing.assert_allclose(by_info(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    # with a head: (batch, n_outputs), and the gradient reaches the pre-trained weights
    head = OmnisslEEGEncoder.from_export(out, n_outputs=3, ch_names=names, input_unit="field")
    logits = head(torch.from_numpy(x))
    assert logits.shape == (8, 3)
    logits.sum().backward()
    assert head.encoder.value_embed.weight.grad is not None and head.final_layer.weight.grad is not None
    # the same file is a plain safetensors export
    assert load_encoder(out).modality.name == "eeg"


def test_inputs_it_cannot_place_are_refused(exported: tuple[Path, Path]) -> None:
    _, out = exported
    names = ["A1", "A2", "FCC3h", "CCP3h", "FCC4h", "CCP4h"]
    with pytest.raises(DataError, match=r"at 250.0 Hz.*pre-trained at 200.0 Hz.*resample"):
        OmnisslEEGEncoder(out, ch_names=names, sfreq=250.0)
    with pytest.raises(DataError, match=r"needs the channels: chs_info"):
        OmnisslEEGEncoder(out, n_chans=6)
    with pytest.raises(DataError, match=r"no position for channel\(s\) EKG"):
        OmnisslEEGEncoder(out, ch_names=[*names[:5], "EKG"])
    with pytest.raises(DataError, match=r"n_chans=5 but 6 channels"):
        OmnisslEEGEncoder(out, ch_names=names, n_chans=5)
    module = OmnisslEEGEncoder(out, ch_names=names)
    with pytest.raises(DataError, match=r"expected windows of shape \(batch, 6 channels, times\)"):
        module(torch.zeros(2, 5, 700))
    with pytest.raises(DataError, match=r"shorter than one patch \(100 samples"):
        module(torch.zeros(2, 6, 50))


def test_channels_known_by_index_take_the_runs_identities(tmp_path: Path) -> None:
    """A run with data.unknown_channels: index learns one identity per such name; the module gives
    each named channel the identity the data set gave it (1 + its index in the run's vocabulary)."""
    torch.manual_seed(0)
    modality = EEGModality(sfreq=100.0, patch_seconds=0.5, channel_vocab=3)
    encoder = TokenEncoder(modality.spec(), modality, dim=32, depth=1, heads=2)
    recipe = {"modality": {"name": "eeg", "sfreq": 100.0, "patch_seconds": 0.5, "channel_vocab": 3},
              "encoder": {"name": "transformer", "dim": 32, "depth": 1, "heads": 2},
              "data": {"name": "eeg_folder", "unknown_channels": "index", "sfreq": 100.0}}
    out = export_safetensors(encoder, recipe, tmp_path / "indexed.safetensors",
                             extra_files={"eeg_channels.json": {"channel_vocabulary": ["X1", "X2"]}})
    names = ["Cz", "X2", "Fz", "X1"]
    signal = np.random.default_rng(0).standard_normal((4, 150)).astype(np.float32)
    positions = np.stack([lookup_position("Cz"), np.zeros(3), lookup_position("Fz"), np.zeros(3)])
    sample = {"signal": signal, "positions": positions.astype(np.float32), "types": np.zeros(4, np.int64),
              "identities": np.array([0, 2, 0, 1]), "sfreq": 100.0, "channels": names}
    loaded = load_encoder(out)
    module = OmnisslEEGEncoder(out, ch_names=names, input_unit="field").eval()
    x = torch.from_numpy(signal[None])
    ours, theirs = module.tokens(x), loaded.prepare([sample])
    assert torch.equal(ours.kinds, theirs.kinds) and torch.equal(ours.coords, theirs.coords)
    assert ours.kinds[0, ::3, 1].tolist() == [0, 2, 0, 1]  # 3 patches per channel: X2 -> 2, X1 -> 1
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), loaded([sample]).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match=r"no position for channel\(s\) X3.*knows by index are \['X1', 'X2'\]"):
        OmnisslEEGEncoder(out, ch_names=["Cz", "X3"])


def test_preprocessing_steps_follow_the_recipe() -> None:
    steps = braindecode_preprocessors({"pick": ["eeg"], "l_freq": 0.1, "h_freq": 75.0, "notch": 50.0,
                                       "sfreq": 200.0, "reference": "average"})
    assert steps == [["pick", {"picks": ["eeg"]}], ["filter", {"l_freq": 0.1, "h_freq": 75.0}],
                     ["notch_filter", {"freqs": [50.0]}], ["resample", {"sfreq": 200.0}],
                     ["set_eeg_reference", {"ref_channels": "average"}]]


def test_braindecode_trains_it(exported: tuple[Path, Path]) -> None:
    """braindecode's own EEGClassifier builds the module from the data (n_outputs, n_chans,
    n_times) and trains it end to end for two epochs."""
    with warnings.catch_warnings():  # braindecode's own models warn about MNE montage names on import
        warnings.simplefilter("ignore", FutureWarning)
        import braindecode  # omnissl-eeg's [test] extra
    run, out = exported
    samples, x = windows(run, 48)
    recipe, _, _ = load_run(run, get_registry())
    labels = build_dataset(recipe, get_registry()).labels[:48].astype(np.int64)
    before = load_encoder(out).encoder.value_embed.weight.detach().clone()
    torch.manual_seed(0)
    clf = braindecode.EEGClassifier(OmnisslEEGEncoder, module__export=str(out),
                                    module__ch_names=samples[0]["channels"], module__input_unit="field",
                                    criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW,
                                    optimizer__lr=1e-3, train_split=None, batch_size=16, max_epochs=2,
                                    classes=[0, 1], verbose=0)
    clf.fit(x, labels)
    module = clf.module_
    assert isinstance(module, OmnisslEEGEncoder) and (module.n_outputs, module.n_chans, module.n_times) == (2, 6, 700)
    losses = clf.history[:, "train_loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(module.encoder.value_embed.weight.detach().cpu(), before)  # fine-tuned, not frozen
    assert clf.predict_proba(x[:4]).shape == (4, 2)
