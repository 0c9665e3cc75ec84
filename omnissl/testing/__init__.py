"""Conformance checks every modality plugin gets for free.

Subclass :class:`ModalityConformance` in a plugin's tests and fill in
``make_modality`` and ``make_dataset``; pytest then runs every ``test_*``
method against your modality (the langchain-tests pattern)::

    class TestEEGConformance(ModalityConformance):
        def make_modality(self):
            return EEGModality(patch_seconds=1.0)

        def make_dataset(self, tmp_path):  # pytest's tmp_path, for files and caches
            return UEAEEG("EyesOpenShut")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnissl.maskers import RandomMasker
from omnissl.modality import Modality
from omnissl.objectives import MAE
from omnissl.encoders import TokenEncoder
from omnissl.tokens import TokenBatch, collate_tokens
from omnissl.train.data import TokenDataset


class ModalityConformance:
    """Checks of the modality contract; subclasses provide a modality and a small data set."""

    batch_size = 4

    def make_modality(self) -> Modality:
        raise NotImplementedError

    def make_dataset(self, tmp_path: Path) -> Any:
        raise NotImplementedError

    def _batch(self, tmp_path: Path, augment: bool) -> tuple[Modality, TokenBatch]:
        modality = self.make_modality()
        tokens = TokenDataset(self.make_dataset(tmp_path), modality)
        n = min(self.batch_size, len(tokens))
        items = [tokens[(i, 1234 + i if augment else None)] for i in range(n)]
        return modality, modality.on_device(collate_tokens(items))

    def test_tokens_follow_spec(self, tmp_path: Path) -> None:
        modality, batch = self._batch(tmp_path, augment=True)
        spec = modality.spec()
        assert batch.values.shape[-1] == spec.value_dim
        assert batch.coords.shape[-1] == spec.coord_dim
        assert torch.isfinite(batch.values[~batch.pad]).all(), "non-finite token values"
        assert torch.isfinite(batch.coords[~batch.pad]).all(), "non-finite coordinates"
        if spec.kind_vocab:
            assert batch.kinds is not None and batch.kinds.shape[-1] == len(spec.kind_vocab)
            for column, vocab in enumerate(spec.kind_vocab):
                real = batch.kinds[..., column][~batch.pad]
                assert int(real.min()) >= 0 and int(real.max()) < vocab, f"kinds column {column} out of range"
        assert (~batch.pad).any(dim=1).all(), "a sample has no real token"

    def test_tokenize_is_deterministic(self, tmp_path: Path) -> None:
        modality = self.make_modality()
        dataset = self.make_dataset(tmp_path)
        first = modality.tokenize(dataset[0], np.random.default_rng(7))
        second = modality.tokenize(dataset[0], np.random.default_rng(7))
        assert torch.equal(first.values, second.values) and torch.equal(first.coords, second.coords)
        plain = [modality.tokenize(dataset[0], None) for _ in range(2)]
        assert torch.equal(plain[0].values, plain[1].values), "tokenize(sample, None) must not be random"

    def test_batched_tokenisation_matches_per_sample(self, tmp_path: Path) -> None:
        """A modality that overrides ``tokenize_batch`` must make exactly what per-sample
        ``tokenize`` and the core's collate make (the loader uses the first, plots the second)."""
        modality = self.make_modality()
        tokens = TokenDataset(self.make_dataset(tmp_path), modality)
        if not tokens.batched:
            return
        n = len(tokens)
        keys = [(i, None if k % 2 else 99 + i) for k, i in enumerate(sorted({n - 1, 0, n // 2, 1 % n}, reverse=True))]
        fast = collate_tokens(tokens.__getitems__(keys))
        slow = collate_tokens([tokens[key] for key in sorted(keys)])
        for name in ("values", "coords", "pad", "kinds", "attn_bias"):
            a, b = getattr(fast, name), getattr(slow, name)
            assert (a is None) == (b is None), f"{name} present on one path only"
            if a is not None:
                assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-6), f"{name} differs"
        assert fast.targets.keys() == slow.targets.keys()
        for name in fast.targets:
            assert torch.allclose(fast.targets[name].float(), slow.targets[name].float(), atol=1e-5), name
        assert torch.equal(fast.labels.isnan(), slow.labels.isnan())
        assert torch.equal(fast.labels.nan_to_num(), slow.labels.nan_to_num())

    def test_mae_loss_ignores_padding(self, tmp_path: Path) -> None:
        modality, batch = self._batch(tmp_path, augment=False)
        torch.manual_seed(0)
        encoder = TokenEncoder(modality.spec(), modality, size="tiny", dim=32, depth=1, heads=2)
        objective = MAE(encoder, modality, decoder_dim=32, decoder_depth=1, decoder_heads=2).eval()
        mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
        assert not (mask.hidden & batch.pad).any(), "padding was hidden"
        visible = torch.zeros_like(batch.pad)
        visible.scatter_(1, mask.visible_idx, ~mask.visible_pad)
        assert not (visible & batch.pad).any(), "padding was visible"
        loss = objective(batch, mask).loss
        assert torch.isfinite(loss)
        # Poison the padding: the loss must not move.
        poisoned = TokenBatch(values=batch.values.masked_fill(batch.pad[..., None], 1e6), coords=batch.coords,
                              pad=batch.pad, kinds=batch.kinds, attn_bias=batch.attn_bias,
                              targets={k: v.masked_fill(batch.pad[..., None], 1e6) for k, v in batch.targets.items()})
        assert torch.allclose(objective(poisoned, mask).loss, loss, rtol=1e-5, atol=1e-6)
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in objective.parameters())
