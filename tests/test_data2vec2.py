"""data2vec 2.0: block outputs from the encoder, contextualised targets, several masks sharing one
teacher pass, padding left out, and a falling loss on images and molecules."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from objective_kit import SPEC_KINDS, Toy, falls, train_cli
from objective_kit import grid_sample as plain_sample

from omnissl import Tokens, collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.errors import RecipeError
from omnissl.maskers import BlockMasker, RandomMasker
from omnissl.maskers.base import Mask
from omnissl.objectives import Data2Vec2, draw_mask
from omnissl.objectives.data2vec2 import normalize_block

def grid_sample(side: int, seed: int) -> Tokens:
    return plain_sample(side, seed, kinds=True)


def build(**options) -> Data2Vec2:
    torch.manual_seed(0)
    encoder = TokenEncoder(SPEC_KINDS, None, dim=32, depth=3, heads=4)
    options = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2, **options}
    return Data2Vec2(encoder, Toy(SPEC_KINDS), **options)


def test_encoder_returns_its_last_block_outputs_without_changing_anything_else():
    torch.manual_seed(0)
    encoder = TokenEncoder(SPEC_KINDS, None, dim=32, depth=3, heads=4).eval()
    before = set(encoder.state_dict())
    batch = collate_tokens([grid_sample(3, 0), grid_sample(4, 1)])
    args = (batch.values, batch.coords, batch.kinds, batch.pad)
    plain = encoder(*args)
    out, blocks = encoder(*args, return_blocks=2)
    assert torch.equal(out, plain) and len(blocks) == 2
    # by hand: the residual stream after blocks 2 and 3, before the final norm
    x = encoder.embed(batch.values, batch.coords, batch.kinds)
    mask = torch.zeros(2, 1, 1, 16).masked_fill(batch.pad[:, None, None], float("-inf"))
    expected = []
    for block in encoder.blocks.blocks:
        x = block(x, attn_mask=mask)
        expected.append(x)
    for got, want in zip(blocks, expected[1:]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(encoder.blocks.norm(expected[-1]), plain)
    assert set(encoder.state_dict()) == before
    with pytest.raises(ValueError, match="return_blocks must be between 0 and 3"):
        encoder(*args, return_blocks=4)


def test_targets_are_the_mean_of_the_normalised_top_k_blocks_and_ignore_padding():
    objective = build(top_k=2)
    batch = collate_tokens([grid_sample(3, 0), grid_sample(5, 1)])  # 9 and 25 tokens
    _, blocks = objective.teacher.module(batch.values, batch.coords, batch.kinds, batch.pad, return_blocks=2)
    real = ~batch.pad[0]
    for b, h in enumerate(blocks):  # instance norm: each feature over the sample's real tokens
        got = normalize_block(h, batch.pad, "instance")[0, real]
        want = F.instance_norm(h[0, real].T[None], eps=1e-5)[0].T
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    expected = sum(normalize_block(h, batch.pad, "instance") for h in blocks) / 2
    torch.testing.assert_close(objective.targets(batch), expected)
    layer = build(top_k=1, target_norm="layer")
    _, (last,) = layer.teacher.module(batch.values, batch.coords, batch.kinds, batch.pad, return_blocks=1)
    torch.testing.assert_close(layer.targets(batch), F.layer_norm(last, (32,)))
    with pytest.raises(RecipeError, match="top_k=4, but the encoder has 3 blocks"):
        build(top_k=4)


def rows(mask: Mask, start: int, every: int) -> Mask:
    return Mask(*(t[start::every] for t in (mask.hidden, mask.visible_idx, mask.visible_pad, mask.hidden_idx,
                                             mask.hidden_pad)))


def test_several_masks_share_one_teacher_pass_and_equal_the_masks_one_by_one():
    many = build(masks_per_sample=3).eval()
    one = build(masks_per_sample=1).eval()
    one.load_state_dict(many.state_dict())
    batch = collate_tokens([grid_sample(4, s) for s in range(5)])
    mask = draw_mask(many, RandomMasker(0.5), batch, torch.Generator().manual_seed(0))
    assert mask.hidden.shape == (15, 16)
    assert not torch.equal(mask.hidden[0], mask.hidden[1])  # each copy has its own mask
    calls = []
    handle = many.teacher.module.register_forward_hook(lambda *_: calls.append(1))
    joint = many(batch, mask).loss
    handle.remove()
    assert len(calls) == 1  # one teacher pass for the three masks
    alone = [one(batch, rows(mask, j, 3)).loss for j in range(3)]  # equal hidden counts: the mean of means
    torch.testing.assert_close(joint, torch.stack(alone).mean())
    with pytest.raises(ValueError, match="needs a mask of 15 rows"):
        many(batch, rows(mask, 0, 3))


@pytest.mark.parametrize("masker", [RandomMasker(0.6), BlockMasker(0.5)], ids=["random", "block"])
def test_padding_never_enters_the_loss(masker):
    objective = build(masks_per_sample=2).eval()
    samples = [grid_sample(4, 0), grid_sample(6, 1), grid_sample(2, 2), grid_sample(5, 3)]
    batch = collate_tokens(samples)
    mask = draw_mask(objective, masker, batch, torch.Generator().manual_seed(0))
    assert not (mask.hidden & torch.repeat_interleave(batch.pad, 2, 0)).any()
    out = objective(batch, mask)
    assert torch.isfinite(out.loss) and set(out.metrics) == {"loss"}
    poisoned = collate_tokens(samples)
    poisoned.values[batch.pad] = 1e4
    poisoned.kinds[batch.pad] = 2
    torch.testing.assert_close(objective(poisoned, mask).loss, out.loss)


def test_the_student_learns_the_teacher_follows_and_is_saved():
    objective = build(masks_per_sample=2, momentum=0.5)
    batch = collate_tokens([grid_sample(4, s) for s in range(4)])
    mask = draw_mask(objective, RandomMasker(0.5), batch, torch.Generator().manual_seed(0))
    objective(batch, mask).loss.backward()
    assert objective.encoder.value_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.decoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in objective.teacher.parameters())
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(1.0)
    teacher = {k: v.clone() for k, v in objective.teacher.module.state_dict().items()}
    objective.after_step(0, 10)  # momentum 0.5 at step 0: halfway to the student
    for name, p in objective.teacher.module.named_parameters():
        student = dict(objective.encoder.named_parameters())[name]
        torch.testing.assert_close(p, (teacher[name] + student) / 2)
    state = objective.state_dict()
    assert {k[len("teacher.module."):] for k in state if k.startswith("teacher.module.")} == \
        set(objective.encoder.state_dict())
    assert not hasattr(objective, "reconstruct")


# Registers data2vec2 for the CLI runs below, unless the core registers it itself (omnissl.builtin).
OBJECTIVE = "objective={name: data2vec2, masks_per_sample: 2, momentum: 0.99, decoder_dim: 32, decoder_heads: 2}"


def train(tmp_path: Path, recipe: str, *overrides: str) -> list[dict]:
    return train_cli(tmp_path, recipe, OBJECTIVE, *overrides)


def test_loss_falls_on_digits(tmp_path):
    falls(train(tmp_path, "image/mae-digits", "train.batch_size=32", "train.steps=25"), 0.8)


def test_loss_falls_on_molecules(tmp_path):
    # atoms: continuous 3-D coordinates, element kinds, a distance prior in attention
    rows = train(tmp_path, "molecule/mae-demo", "data.files=[freesolv.csv]", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.batch_size=32", "train.steps=30", "optim.lr=3e-3")
    falls(rows, 0.8)
