"""Conformance checks every modality plugin gets for free.

Subclass :class:`ModalityConformance` in a plugin's tests and fill in
``make_modality`` and ``make_dataset``; pytest then runs every ``test_*``
method against your modality (the langchain-tests pattern)::

    class TestEEGConformance(ModalityConformance):
        def make_modality(self):
            return EEGModality(patch_seconds=1.0)

        def make_dataset(self, tmp_path):  # pytest's tmp_path, for files and caches
            return UEAEEG("EyesOpenShut")

``test_shipped_recipes_train`` trains every recipe the installed plugins ship for this modality
(recipes whose ``modality.name`` is the modality's ``name``) for two steps on ``make_dataset``'s
data, in-process, and fails naming each recipe that does not finish with a finite loss and a
checkpoint. The recipe keeps its components (modality, masker, encoder, objective and their
settings) but is made tiny and fast by overrides: ``train.steps=2``, a batch of
``train_batch_size``, no micro-batching, validation at the end only, no probes or plots, CPU;
the encoder ``dim=32, depth=1, heads=2``; the objective's decoder, predictor, projector and head
sizes (``decoder_*``, ``pred_*``, ``out_dim``, ``hidden_dim``, ...) shrunk where its factory has
them, and iBOT's local crops cut to two. The recipe's data set is replaced by the kit's (its
``data.num_workers``, ``val_fraction`` and ``split`` are set for a few samples), so paper settings
(ViT-B, data under ``data.root``) train too. No modality size is shrunk: with the encoder shrunk,
even CT's 96-voxel crops train fast. ``recipe_overrides`` adds overrides
for a plugin whose recipes need them to fit its test data (a modality setting tied to the data,
such as a sampling rate); ``train_recipes = False`` in a second subclass of the same modality
removes the test from it, so the recipes are not trained twice. ``make_registry`` gives the
registry the recipes come from (default: the installed plugins').
"""

from __future__ import annotations

import traceback
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
    train_recipes = True  # test_shipped_recipes_train; False in a second subclass of the same modality
    train_batch_size = 2
    recipe_overrides: tuple[str, ...] = ()  # key=value overrides every recipe of this modality gets

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.train_recipes:  # not collected at all (no skip): another subclass trains the recipes
            cls.test_shipped_recipes_train = None  # type: ignore[assignment]

    def make_modality(self) -> Modality:
        raise NotImplementedError

    def make_dataset(self, tmp_path: Path) -> Any:
        raise NotImplementedError

    def make_registry(self) -> Any:
        """The registry whose recipes and components test_shipped_recipes_train uses: the installed plugins'."""
        from omnissl.plugins import get_registry

        return get_registry()

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

    def test_shipped_recipes_train(self, tmp_path: Path) -> None:
        """Every recipe shipped for this modality trains two tiny steps on the kit's data set."""
        from omnissl.recipe import load_recipe, load_yaml, recipe_index
        from omnissl.train.loop import train

        registry = self.make_registry()
        name = self.make_modality().name
        recipes = {}
        for recipe_name, path in recipe_index(registry).items():
            raw, _ = load_yaml(path)
            if isinstance(raw.get("modality"), dict) and raw["modality"].get("name") == name:
                recipes[recipe_name] = raw
        assert recipes, (f"no installed recipe uses modality {name!r}: ship at least a demo recipe in the plugin's "
                         "recipes folder (docs/plugin-guide.md), or set train_recipes = False on this subclass")
        dataset = self.make_dataset(tmp_path)
        failures = []
        for recipe_name, raw in recipes.items():
            try:
                overrides = tiny_overrides(raw, registry, self.train_batch_size) + list(self.recipe_overrides)
                recipe = load_recipe(recipe_name, overrides, registry)
                out = tmp_path / "runs" / recipe_name.replace("/", "_")
                torch.manual_seed(0)
                metrics = train(recipe, registry, out, dataset=dataset)
                loss = metrics.get("loss")
                if loss is None or not np.isfinite(loss):
                    raise AssertionError(f"final loss is {loss!r} (metrics {metrics})")
                if not (out / "checkpoints" / "last.pt").is_file():
                    raise AssertionError(f"no checkpoint at {out / 'checkpoints' / 'last.pt'}")
            except Exception as exc:  # every recipe is tried; the test names each one that failed
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                failures.append(f"{recipe_name}: {type(exc).__name__}: {exc} (raised at {frame.filename}:"
                                f"{frame.lineno})")
        assert not failures, f"{len(failures)} of {len(recipes)} shipped {name!r} recipes do not train:\n" + \
            "\n".join(failures)


# Sizes a recipe's components shrink to in test_shipped_recipes_train, when their factory has the option.
TINY_ENCODER = {"dim": 32, "depth": 1, "heads": 2}
TINY_OBJECTIVE = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2,  # MAE, data2vec 2.0, denoising
                  "pred_dim": 16, "pred_depth": 1, "pred_heads": 2,  # I-JEPA's predictor
                  "out_dim": 64, "patch_out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16,  # DINO/iBOT heads
                  "local_views": 2,
                  "proj_dim": 16, "proj_hidden": 32, "num_slices": 16,  # LeJEPA's projector and sketch
                  "masks_per_sample": 2, "top_k": 1}  # data2vec 2.0: top_k <= the encoder's depth


def tiny_overrides(raw: dict[str, Any], registry: Any, batch_size: int) -> list[str]:
    """Overrides that keep a recipe's components but make it train two fast steps on a few samples."""
    from omnissl.recipe import factory_parameters

    out = ["train.steps=2", f"train.batch_size={batch_size}", "train.micro_batch_size=null", "train.val_every=0",
           "train.val_batches=1", "train.log_every=1", "train.ckpt_every=2", "train.keep_checkpoints=null",
           "train.compile=false", "train.strategy=auto", "train.device=cpu", "train.precision=fp32",
           "optim.warmup_steps=0", "probe.enabled=false", "viz.enabled=false",
           "data.num_workers=0", "data.val_fraction=0.25", "data.split=auto"]
    for section, kind, tiny in (("encoder", "encoders", TINY_ENCODER), ("objective", "objectives", TINY_OBJECTIVE)):
        params = factory_parameters(registry.get(kind, raw[section]["name"]), kind)
        out += [f"{section}.{key}={value}" for key, value in tiny.items() if key in params]
    return out
