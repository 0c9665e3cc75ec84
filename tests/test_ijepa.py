"""I-JEPA: targets from the mask, each block predicted from the context alone, padding left out,
the teacher saved and following the student, and a falling loss on images and molecules."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from objective_kit import SPEC_KINDS, Toy, falls, train_cli
from objective_kit import grid_sample as plain_sample

from omnissl import Tokens, collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.encoders.transformer import gather_tokens
from omnissl.maskers import MultiBlockMasker, RandomMasker
from omnissl.objectives import IJEPA
from omnissl.objectives.ijepa import latent_loss
from omnissl.tokens import gather_rows

def grid_sample(side: int, seed: int) -> Tokens:
    return plain_sample(side, seed, kinds=True)


def build(**options) -> IJEPA:
    torch.manual_seed(0)
    encoder = TokenEncoder(SPEC_KINDS, None, dim=32, depth=2, heads=4)
    return IJEPA(encoder, Toy(SPEC_KINDS), **{"pred_dim": 16, "pred_depth": 2, "pred_heads": 2, **options})


def test_targets_come_from_the_mask():
    batch = collate_tokens([grid_sample(6, s) for s in range(3)])
    blocks = MultiBlockMasker(num_targets=3)(batch, torch.Generator().manual_seed(0))
    idx, pad = IJEPA.targets_of(blocks)
    assert torch.equal(idx, blocks.target_idx) and torch.equal(pad, blocks.target_pad)
    halves = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    idx, pad = IJEPA.targets_of(halves)  # one target block: the hidden tokens
    assert idx.shape == (3, 1, 18) and torch.equal(idx[:, 0], halves.hidden_idx)


def test_each_target_block_is_predicted_from_the_context_alone():
    """The loss is the mean squared error, over every real target token, between the predictor's
    output for that block (context + that block's mask tokens, nothing else) and the teacher's
    layer-normed features."""
    objective = build().eval()
    samples = [grid_sample(5, 0), grid_sample(6, 1), grid_sample(4, 2)]
    batch = collate_tokens(samples)
    mask = MultiBlockMasker(num_targets=3)(batch, torch.Generator().manual_seed(1))
    values, coords, kinds, _ = gather_tokens(batch, mask.visible_idx)
    context = objective.encoder(values, coords, kinds, mask.visible_pad)
    teacher = F.layer_norm(objective.encoder.forward_batch(batch), (32,))  # the teacher starts as the student
    errors = []
    for k in range(3):
        idx, pad = mask.target_idx[:, k], mask.target_pad[:, k]
        pred = objective.predictor(batch, context, mask.visible_idx, mask.visible_pad, idx, pad)
        errors.append(((pred - gather_rows(teacher, idx)) ** 2).mean(-1)[~pad])
    expected = torch.cat(errors).mean()
    torch.testing.assert_close(objective(batch, mask).loss, expected, rtol=1e-5, atol=1e-6)
    smooth = build(loss="smooth_l1").eval()
    assert not torch.allclose(smooth(batch, mask).loss, expected)


@pytest.mark.parametrize("masker", [MultiBlockMasker(), RandomMasker(0.5)], ids=["multiblock", "random"])
def test_padding_never_enters_the_loss(masker):
    objective = build().eval()
    samples = [grid_sample(4, 0), grid_sample(6, 1), grid_sample(5, 2), grid_sample(1, 3)]  # one of 1 token
    batch = collate_tokens(samples)
    mask = masker(batch, torch.Generator().manual_seed(0))
    out = objective(batch, mask)
    assert torch.isfinite(out.loss) and set(out.metrics) == {"loss"}
    poisoned = collate_tokens(samples)
    poisoned.values[batch.pad] = 1e4
    poisoned.kinds[batch.pad] = 2
    torch.testing.assert_close(objective(poisoned, mask).loss, out.loss)


def test_latent_loss_scores_real_tokens_only():
    pred, target = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    pad = torch.zeros(2, 3, 4, dtype=torch.bool)
    pad[0, 1, 2:] = True
    pad[1] = True
    target_far = target.clone()
    target_far[pad] = 1e6
    real = ~pad
    torch.testing.assert_close(latent_loss(pred, target_far, pad), ((pred - target) ** 2)[real].mean())
    torch.testing.assert_close(latent_loss(pred, target_far, pad, "smooth_l1"),
                               F.smooth_l1_loss(pred[real], target[real]))
    assert latent_loss(pred, target, torch.ones_like(pad)) == 0


def test_the_teacher_is_saved_and_after_step_moves_it():
    objective = build(momentum=0.5)
    batch = collate_tokens([grid_sample(5, s) for s in range(4)])
    mask = MultiBlockMasker()(batch, torch.Generator().manual_seed(0))
    objective(batch, mask).loss.backward()
    assert objective.encoder.value_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.predictor.parameters())
    assert all(p.grad is None and not p.requires_grad for p in objective.teacher.parameters())
    state = objective.state_dict()
    teacher_keys = {k[len("teacher.module."):] for k in state if k.startswith("teacher.module.")}
    assert teacher_keys == set(objective.encoder.state_dict())
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in objective.teacher.module.named_parameters()}
    objective.after_step(0, 10)  # momentum 0.5 at the first step
    student = dict(objective.encoder.named_parameters())
    for name, p in objective.teacher.module.named_parameters():
        torch.testing.assert_close(p, (before[name] + student[name]) / 2)
    # a checkpoint restores the moved teacher
    fresh = build(momentum=0.5)
    fresh.load_state_dict(objective.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.teacher.parameters(), objective.teacher.parameters()))
    objective.after_step(10, 10)  # momentum 1 at the end: the teacher stays
    assert all(torch.equal(a, b) for a, b in zip(fresh.teacher.parameters(), objective.teacher.parameters()))
    with pytest.raises(ValueError, match="'l2' or 'smooth_l1'"):
        build(loss="l1")


# Registers ijepa for the CLI runs below, unless the core registers it itself (omnissl.builtin).
IJEPA_ARGS = ["objective={name: ijepa, pred_dim: 32, pred_depth: 1, pred_heads: 2, momentum: 0.99}",
         "masker={name: multiblock}"]


def train(tmp_path: Path, recipe: str, *overrides: str) -> list[dict]:
    return train_cli(tmp_path, recipe, *IJEPA_ARGS, *overrides)


def test_loss_falls_on_digits(tmp_path):
    falls(train(tmp_path, "image/mae-digits", "train.batch_size=32", "train.steps=25"), 0.8)


def test_loss_falls_on_molecules(tmp_path):
    # atoms have continuous 3-D coordinates: the blocks are neighbourhoods of atoms
    rows = train(tmp_path, "molecule/mae-demo", "data.files=[freesolv.csv]", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.batch_size=32", "train.steps=30", "optim.lr=3e-3")
    falls(rows, 0.8)
