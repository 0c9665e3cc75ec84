"""Tokens against spec(), spectral targets, mixed EEG+MEG batches: padding never visible nor scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnissl import collate_tokens
from omnissl.encoders.transformer import TokenEncoder
from omnissl.maskers import GroupMasker, RandomMasker, SpanMasker
from omnissl.objectives.mae import MAE
from omnissl_eeg import EEGModality, EEGRecordings
from omnissl_eeg.spectrum import patch_spectrum, patches_from_spectrum, spectral_loss

SETTINGS = dict(notch=None, l_freq=1.0, h_freq=None, window_seconds=2.0, reject=None)


@pytest.fixture(scope="module")
def mixed(eeg_raw, meg_raw):
    """An EEG recording (14 channels) and an MEG one (12 mag + 24 grad) in one data set."""
    return EEGRecordings([eeg_raw, meg_raw], names=["eeg", "meg"], **SETTINGS)


@pytest.mark.parametrize("target", ["raw", "spectral", "both"])
def test_eeg_tokens_match_spec(mixed, target: str):
    modality = EEGModality(patch_seconds=0.5, target=target)
    spec = modality.spec()
    for index, channels in ((0, 14), (len(mixed) - 1, 36)):
        tokens = modality.tokenize(mixed[index], None)
        tokens.validate(spec)
        assert len(tokens) == channels * 4  # 2 s windows of 0.5 s patches
        assert tokens.coords[:, 3].unique().tolist() == [0.0, 1.0, 2.0, 3.0]
        signal = torch.as_tensor(mixed[index]["signal"])
        assert torch.equal(tokens.values, signal.reshape(channels * 4, -1))  # field units on the host
        device = modality.on_device(collate_tokens([tokens]))  # what the encoder sees
        device.validate(spec)
        assert torch.equal(device.values[0], tokens.values / modality.amplitude_scale)
        assert (target != "raw") == ("spectrum" in device.targets)
        if target != "raw":
            torch.testing.assert_close(device.targets["spectrum"][0], patch_spectrum(device.values[0]))
    streams = {s.name for s in modality.target_streams()}
    assert streams == {"raw": {"values"}, "spectral": {"spectrum"}, "both": {"values", "spectrum"}}[target]


def test_eeg_spectrum_inverts_and_phase_loss_wraps():
    patches = torch.randn(5, 100)
    np.testing.assert_allclose(patches_from_spectrum(patch_spectrum(patches), 100), patches, atol=1e-4)
    target = patch_spectrum(patches)
    half = target.shape[1] // 2
    wrapped = target.clone()
    wrapped[:, half:] += 2 * np.pi  # the same angles, one turn on
    assert spectral_loss(wrapped, target).abs().max() < 1e-5
    assert (spectral_loss(target + 0.5, target) > 0.1).all()


def test_eeg_mixed_montage_batch_trains_and_padding_is_inert(mixed):
    modality = EEGModality(patch_seconds=0.5, target="both")
    batch = modality.on_device(collate_tokens([modality.tokenize(mixed[i], None) for i in (0, 1, len(mixed) - 1)]))
    assert batch.pad[:2].sum(1).tolist() == [88, 88] and not batch.pad[2].any()  # 56 EEG vs 144 MEG tokens
    assert not batch.targets["spectrum"][batch.pad].any()
    torch.manual_seed(0)
    objective = MAE(TokenEncoder(modality.spec(), modality, dim=32, depth=1, heads=2), modality,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2)
    for masker in (RandomMasker(0.5), SpanMasker(0.5, span=1, axis=3), GroupMasker(0.5, kinds_column=0,
                                                                                   coord_axes=[0, 1, 2])):
        mask = masker(batch, torch.Generator().manual_seed(0))
        assert not (mask.hidden & batch.pad).any()
        assert not batch.pad.gather(1, mask.visible_idx)[~mask.visible_pad].any()
        loss = objective(batch, mask).loss
        loss.backward()
        assert torch.isfinite(loss)
        # garbage in the padding rows changes nothing
        poisoned = modality.on_device(collate_tokens([modality.tokenize(mixed[i], None)
                                                      for i in (0, 1, len(mixed) - 1)]))
        poisoned.values[poisoned.pad] = 1e6
        poisoned.targets["spectrum"][poisoned.pad] = 1e6
        assert torch.allclose(objective(poisoned, mask).loss, loss)


def test_eeg_group_masker_hides_whole_channels(mixed):
    modality = EEGModality(patch_seconds=0.5)
    batch = collate_tokens([modality.tokenize(mixed[0], None)])
    mask = GroupMasker(0.5, kinds_column=0, coord_axes=[0, 1, 2])(batch, torch.Generator().manual_seed(1))
    per_channel = mask.hidden[0].view(14, 4)
    assert (per_channel.all(1) | ~per_channel.any(1)).all()  # each channel all hidden or all visible
    assert int(per_channel.all(1).sum()) == 7


@pytest.mark.parametrize(("target", "patch_seconds"), [("raw", 0.5), ("both", 0.5), ("raw", 0.3)])
def test_eeg_batched_tokens_equal_per_sample_tokens(mixed, target: str, patch_seconds: float):
    """get_batch + tokenize_batch (the loader's fast path) make exactly the batch that tokenising
    each window and padding makes, across a mixed EEG (14 ch) + MEG (36 ch) batch; with 0.3 s
    patches a 2 s window's last 40 samples are no patch and are never copied."""
    from omnissl.train.data import TokenDataset

    modality = EEGModality(patch_seconds=patch_seconds, target=target)
    tokens = TokenDataset(mixed, modality)
    assert tokens.batched
    keys = [(len(mixed) - 1, None), (0, 7), (2, None), (len(mixed) - 2, 3)]  # unsorted on purpose
    fast = collate_tokens(tokens.__getitems__(keys))
    slow = collate_tokens([tokens[key] for key in sorted(keys)])
    assert fast.pad.sum().item() == slow.pad.sum().item() > 0
    for name in ("values", "coords", "pad", "kinds"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.meta == slow.meta
    np.testing.assert_array_equal(fast.labels.numpy(), slow.labels.numpy())
    fast.validate(modality.spec())
    fast, slow = modality.on_device(fast), modality.on_device(slow)  # scaled, spectra added
    assert torch.equal(fast.values, slow.values)
    assert fast.targets.keys() == slow.targets.keys() == ({"spectrum"} if target == "both" else set())
    for name in fast.targets:
        torch.testing.assert_close(fast.targets[name], slow.targets[name])


def test_eeg_tokens_from_stacks_equal_per_sample_tokens(mixed):
    """Windows read from a data set the modality does not know (shards, mixtures) arrive as
    stacks (omnissl.datasets.read_stacks): tokenize_stacks makes exactly the per-sample batch,
    for one montage (the unpadded path), for EEG and MEG stacks of different widths, and for a
    stack whose windows disagree on positions (taken row by row)."""
    from omnissl.datasets import stack_samples

    modality = EEGModality(patch_seconds=0.3)  # 2 s windows: 6 patches, the last 40 samples cut
    samples = [mixed[i] for i in (0, 1, len(mixed) - 2, len(mixed) - 1)]
    moved = dict(samples[1], positions=samples[1]["positions"] + np.float32(0.01))  # alike, another montage
    for batch in (samples[:2], samples, [samples[0], moved, *samples[2:]]):
        stacks = stack_samples(batch)
        fast = modality.tokenize_stacks(stacks, len(batch))
        slow = collate_tokens([modality.tokenize(sample, None) for sample in batch])
        for name in ("values", "coords", "pad", "kinds"):
            assert torch.equal(getattr(fast, name), getattr(slow, name)), name
        assert fast.meta == slow.meta
    assert [len(stack.rows) for stack in stack_samples(samples)] == [2, 2]


def test_eeg_batched_tokens_cut_to_whole_patches_on_one_montage(eeg_raw):
    """The unpadded fast path (torch's gather) with windows that are not a whole number of
    patches: only the patches' samples are gathered, and the batch equals per-sample tokens."""
    from omnissl.train.data import TokenDataset

    dataset = EEGRecordings([eeg_raw, eeg_raw.copy()], names=["a", "b"], **SETTINGS)
    modality = EEGModality(patch_seconds=0.3)  # 60 samples: 6 patches of a 400-sample window
    assert dataset.get_batch([0, 1], samples=360)["signal"].shape == (2, 14, 360)
    tokens = TokenDataset(dataset, modality)
    keys = [(len(dataset) - 1, None), (0, None), (3, None)]
    fast = collate_tokens(tokens.__getitems__(keys))
    slow = collate_tokens([tokens[key] for key in sorted(keys)])
    assert fast.values.shape == (3, 14 * 6, 60) and not fast.pad.any()
    for name in ("values", "coords", "pad", "kinds"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name


def test_eeg_montage_tables_follow_the_data_set(eeg_raw, meg_raw):
    """One modality tokenising two data sets (training, then a probe set with other montages)
    builds tables per data set: recordings sharing a montage share one table, and the second
    data set's batches match per-sample tokenisation, never the first one's tables."""
    from omnissl.train.data import TokenDataset

    modality = EEGModality(patch_seconds=0.5)
    twice = EEGRecordings([eeg_raw, eeg_raw.copy()], names=["a", "b"], **SETTINGS)
    moved = eeg_raw.copy()
    moved.pick(moved.ch_names[:9])  # fewer channels: another montage
    other = EEGRecordings([moved, meg_raw], names=["moved", "meg"], **SETTINGS)
    for dataset, montages in ((twice, 1), (other, 2), (twice, 1)):
        tokens = TokenDataset(dataset, modality)
        keys = [(0, None), (len(dataset) - 1, None), (1, None)]
        fast = tokens.__getitems__(keys)
        slow = collate_tokens([tokens[key] for key in sorted(keys)])
        for name in ("values", "coords", "pad", "kinds"):
            assert torch.equal(getattr(fast, name), getattr(slow, name)), name
        assert fast.meta == slow.meta
        length = dataset.recordings[0].data.shape[2]
        assert len(modality._montage_tables(dataset, length).meta) == montages
