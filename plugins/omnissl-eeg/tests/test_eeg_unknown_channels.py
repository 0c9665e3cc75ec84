"""Channels without positions (issue 13, item 4): unknown_channels: index keeps them with a learned
per-channel identity (a second kinds column) so that such recordings train; drop, when it would drop
every channel, names them and the remedies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.cli import main
from omnissl.errors import DataError
from omnissl_eeg import EEGModality, EEGRecordings

SETTINGS = dict(notch=None, l_freq=None, h_freq=None, window_seconds=2.0, reject=None, sfreq=250.0)


@pytest.fixture
def meg_unlocated(meg_raw):
    """The synthetic MEG recording with its sensor locations erased, as some exports leave them."""
    raw = meg_raw.copy()
    for ch in raw.info["chs"]:
        ch["loc"][:] = 0.0
    return raw


def test_eeg_dropping_every_channel_names_them_and_the_remedies(meg_unlocated):
    """drop used to end in 'no usable channel with a known position is left', naming none."""
    with pytest.raises(DataError) as caught:
        EEGRecordings([meg_unlocated], names=["run1"], **SETTINGS)
    message = str(caught.value)
    assert message.startswith("run1: no channel has a position, so data.unknown_channels: drop leaves none: "
                              "MEG0001, MEG0002, MEG0003, MEG0011")
    assert "and 16 more" in message  # 36 channels: the first 20 named
    assert "set a montage on the recording" in message and "data.unknown_channels: index" in message


def test_eeg_index_keeps_channels_with_an_identity(meg_unlocated, eeg_raw):
    data = EEGRecordings([eeg_raw, meg_unlocated], names=["eeg", "meg"], unknown_channels="index", **SETTINGS)
    assert data.channel_vocabulary == sorted(meg_unlocated.ch_names)
    eeg, meg = data.identities
    assert not eeg.any()  # EEG electrodes have positions: identity 0
    assert sorted(meg.tolist()) == list(range(1, 37))
    assert not data.recordings[1].positions.any() and data.recordings[1].report["indexed"] == meg_unlocated.ch_names
    assert data.summary()["channel names identified by index"] == 36

    modality = EEGModality(sfreq=250.0, patch_seconds=0.5, channel_vocab=40)
    assert modality.spec().kind_vocab == (3, 40)
    from omnissl.train.data import TokenDataset

    tokens = TokenDataset(data, modality)
    keys = [(0, None), (len(data) - 1, None)]
    fast = collate_tokens(tokens.__getitems__(keys))
    slow = collate_tokens([tokens[key] for key in keys])
    for name in ("values", "coords", "pad", "kinds"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    fast.validate(modality.spec())
    meg_ids = fast.kinds[1, :, 1].view(36, 4)  # channel-major: each channel's 4 patches share its identity
    assert (meg_ids == meg_ids[:, :1]).all() and meg_ids[:, 0].tolist() == meg.tolist()
    assert not fast.kinds[0, ~fast.pad[0], 1].any()

    with pytest.raises(DataError, match=r"meg: 36 channel names have no position .* modality.channel_vocab is 0; "
                                        r"set modality.channel_vocab to at least 37"):
        EEGModality(sfreq=250.0, patch_seconds=0.5).tokenize(data[len(data) - 1], None)


def test_eeg_recording_without_positions_trains_with_index(meg_unlocated, write_recording, tmp_path: Path):
    """An MEG recording with no sensor positions pre-trains a few steps end to end, and the
    channel identities are learned (their embedding rows move, the unused ones do not)."""
    write_recording(meg_unlocated, tmp_path / "meg" / "run_meg.fif")
    recipe = tmp_path / "index.yaml"
    recipe.write_text(f"""
modality: {{name: eeg, sfreq: 250.0, patch_seconds: 0.5, channel_vocab: 48}}
data: {{name: eeg_folder, root: {tmp_path / 'meg'}, cache_dir: {tmp_path / 'cache'}, notch: null, reject: null,
        sfreq: 250.0, window_seconds: 2.0, unknown_channels: index, val_fraction: 0.2}}
masker: {{name: random, ratio: 0.5}}
encoder: {{name: transformer, size: tiny, dim: 32, depth: 1, heads: 2}}
objective: {{name: mae, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2}}
optim: {{lr: 1.0e-2, warmup_steps: 1}}
train: {{steps: 3, batch_size: 4, log_every: 1, val_every: 3, ckpt_every: 3, seed: 0}}
probe: {{enabled: false}}
""")
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["channel names identified by index"] == 36 and summary["samples"] == 10
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    from safetensors.torch import load_file

    from omnissl.build import build_encoder, build_modality
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe

    trained = load_file(tmp_path / "run" / "checkpoints" / "encoder.safetensors")["kind_embed.tables.1.weight"]
    registry = get_registry()
    loaded = load_recipe(str(recipe), [], registry)
    torch.manual_seed(0)  # the run's initialisation
    modality = build_modality(loaded, registry)
    initial = build_encoder(loaded, registry, modality).state_dict()["kind_embed.tables.1.weight"]
    assert trained.shape == (48, 32)
    moved = (trained - initial).abs().sum(dim=1)  # per identity row
    assert moved[1:37].min() > 10 * moved[37:].max()  # the 36 channels' identities were learned, unused rows not
