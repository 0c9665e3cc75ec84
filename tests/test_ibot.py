"""iBOT: views are token-space blocks without padding, the DINO and MIM losses as written, the
attention masker fed by the teacher, centres that update and are saved, the teacher following the
student, and a falling loss on digits (random and attention masking) and molecules."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from objective_kit import SPEC_KINDS, Toy, falls, train_cli
from objective_kit import grid_sample as plain_sample

from omnissl import Tokens, collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.errors import RecipeError
from omnissl.maskers import AttentionMasker, RandomMasker
from omnissl.maskers.base import Mask
from omnissl.objectives import IBOT
from omnissl.objectives.ibot import select_views
from omnissl.tokens import gather_rows

def grid_sample(side: int, seed: int) -> Tokens:
    return plain_sample(side, seed, kinds=True)


def build(**options) -> IBOT:
    torch.manual_seed(0)
    encoder = TokenEncoder(SPEC_KINDS, None, dim=32, depth=2, heads=4)
    return IBOT(encoder, Toy(SPEC_KINDS), **{"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "local_views": 3, **options})


SAMPLES = [grid_sample(6, 0), grid_sample(4, 1), grid_sample(5, 2), grid_sample(1, 3)]  # one of 1 token


def test_views_are_blocks_of_real_tokens_with_their_coordinates():
    objective = build(global_scale=[0.5, 0.9], local_scale=[0.1, 0.3])
    batch = collate_tokens(SAMPLES)
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    real = (~batch.pad).sum(1)
    for idx, pad, times, (low, high) in ((views.global_idx, views.global_pad, 2, (0.5, 0.9)),
                                         (views.local_idx, views.local_pad, 3, (0.1, 0.3))):
        assert idx.shape[0] == times * batch.batch_size
        owner = torch.arange(batch.batch_size).repeat_interleave(times)
        assert not batch.pad[owner[:, None], idx][~pad].any()  # a view never selects padding
        counts = (~pad).sum(1)
        n = real[owner]
        big = n >= 4
        assert (counts[big] >= torch.floor(low * n[big])).all() and (counts[big] <= torch.ceil(high * n[big])).all()
        assert torch.equal(counts[n == 1], torch.ones_like(counts[n == 1]))  # one token: the view is it
        for row in range(idx.shape[0]):  # distinct tokens
            chosen = idx[row][~pad[row]]
            assert chosen.unique().numel() == chosen.numel()
        glob = select_views(batch, idx, pad)
        torch.testing.assert_close(glob.coords, gather_rows(batch.coords.repeat_interleave(times, 0), idx))
    # the MIM mask is over the global views, and never hides their filler
    assert views.mask.hidden.shape == views.global_pad.shape
    assert not (views.mask.hidden & views.global_pad).any()
    same = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    assert torch.equal(same.global_idx, views.global_idx) and torch.equal(same.mask.hidden, views.mask.hidden)


def test_losses_are_dino_and_masked_token_distillation():
    objective = build(local_views=2, lambda_mim=0.5, teacher_temp=0.07, student_temp=0.2).eval()
    with torch.no_grad():
        objective.center.normal_()
        objective.patch_center.normal_()
    batch = collate_tokens(SAMPLES[:3])
    views = objective.make_mask(batch, RandomMasker(0.4), torch.Generator().manual_seed(2))
    out = objective(batch, views)
    b = batch.batch_size
    glob = select_views(batch, views.global_idx, views.global_pad)
    local = select_views(batch, views.local_idx, views.local_pad)
    enc, head = objective.encoder, objective.heads["pooled"]
    student = enc(glob.values, glob.coords, glob.kinds, glob.pad, hidden=views.mask.hidden)
    teacher = enc(glob.values, glob.coords, glob.kinds, glob.pad)  # the teacher starts as the student
    s_local = head(TokenEncoder.pool(enc(local.values, local.coords, local.kinds, local.pad), local.pad))
    s_global = head(TokenEncoder.pool(student, glob.pad))
    t = F.softmax((head(TokenEncoder.pool(teacher, glob.pad)) - objective.center) / 0.07, -1)
    ce = lambda p, s: -(p * F.log_softmax(s / 0.2, -1)).sum(-1).mean()  # noqa: E731
    terms = []
    for i in range(2):
        terms.append(ce(t[i::2], s_global[1 - i::2]))
        terms += [ce(t[i::2], s_local[j::2]) for j in range(2)]
    dino = torch.stack(terms).mean()
    torch.testing.assert_close(out.metrics["loss_dino"], dino, rtol=1e-5, atol=1e-6)
    tp = F.softmax((head(teacher) - objective.patch_center) / 0.07, -1)
    sp = F.log_softmax(head(student) / 0.2, -1)
    per = []
    for row in range(2 * b):
        hidden = views.mask.hidden[row]
        if hidden.any():
            per.append(-(tp[row, hidden] * sp[row, hidden]).sum(-1).mean())
    mim = torch.stack(per).mean()
    torch.testing.assert_close(out.metrics["loss_mim"], mim, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, dino + 0.5 * mim, rtol=1e-5, atol=1e-6)
    entropy = -(t * t.log()).sum(-1).mean()
    torch.testing.assert_close(out.metrics["kl_dino"], dino - entropy, rtol=1e-4, atol=1e-5)
    assert out.metrics["kl_dino"] >= 0 and out.metrics["kl_mim"] >= 0


@pytest.mark.parametrize("masker", [RandomMasker(0.5), AttentionMasker(0.5, 0.25)], ids=["random", "attention"])
def test_padding_never_enters_the_loss(masker):
    objective = build().eval()
    batch = collate_tokens(SAMPLES)
    views = objective.make_mask(batch, masker, torch.Generator().manual_seed(0))
    out = objective(batch, views)
    assert torch.isfinite(out.loss) and set(out.metrics) == {"loss", "loss_dino", "loss_mim", "kl_dino", "kl_mim",
                                                          "teacher_entropy"}
    poisoned = collate_tokens(SAMPLES)
    poisoned.values[batch.pad] = 1e4
    poisoned.kinds[batch.pad] = 2
    again = objective.make_mask(poisoned, masker, torch.Generator().manual_seed(0))
    assert torch.equal(again.mask.hidden, views.mask.hidden)  # attention scores ignore padding too
    torch.testing.assert_close(objective(poisoned, again).loss, out.loss)


@pytest.mark.parametrize("head_norm", ["none", "batch"])
def test_patch_loss_and_centre_read_hidden_tokens_only(head_norm):
    # The patch heads see the hidden tokens only (DINOv2's choice): the teacher's output at a
    # visible token or at a view's filler, and the student's at a visible token, change neither
    # the MIM loss nor the patch centre, even with batch statistics in the heads; the teacher's
    # output at a hidden token changes both.
    objective = build(head_norm=head_norm, center_momentum=0.5)
    batch = collate_tokens(SAMPLES)
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    glob = select_views(batch, views.global_idx, views.global_pad)
    hidden, filler = views.mask.hidden, views.global_pad
    assert hidden.any() and (~hidden & ~filler).any() and filler.any()
    teacher = objective.teacher(glob.values, glob.coords, glob.kinds, glob.pad)

    def run(features, student_offset=None):
        objective.patch_center.zero_()
        objective.center_sums.zero_()
        views.teacher_features = features
        handle = None
        if student_offset is not None:  # changes the student's global-view features (its first call)
            calls = []

            def hook(module, args, output):
                calls.append(1)
                return output + student_offset if len(calls) == 1 else output

            handle = objective.encoder.register_forward_hook(hook)
        out = objective(batch, views)
        objective.update_centers()  # what after_step does once per optimiser step
        if handle is not None:
            handle.remove()
        return out.metrics["loss_mim"], objective.patch_center.clone(), out.metrics["loss_dino"]

    mim, centre, dino = run(teacher)
    assert mim > 0 and centre.abs().sum() > 0
    for where in (~hidden & ~filler, filler):
        changed = teacher.clone()
        changed[where] = torch.randn_like(changed[where]) * 10
        again, again_centre, _ = run(changed)
        torch.testing.assert_close(again, mim)
        torch.testing.assert_close(again_centre, centre)
    offset = torch.zeros_like(teacher)
    offset[~hidden & ~filler] = 5.0
    again, _, again_dino = run(teacher, offset)
    torch.testing.assert_close(again, mim)
    assert not torch.isclose(again_dino, dino)  # the same offset does reach the pooled (DINO) term
    changed = teacher.clone()
    changed[hidden] = torch.randn_like(changed[hidden]) * 10
    again, again_centre, _ = run(changed)
    assert not torch.isclose(again, mim) and not torch.allclose(again_centre, centre)


@pytest.mark.parametrize("head_norm", ["none", "batch"])
def test_nothing_hidden_gives_a_zero_patch_loss_and_keeps_the_patch_centre(head_norm):
    objective = build(head_norm=head_norm, shared_head=False)
    batch = collate_tokens(SAMPLES)
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    views.mask = Mask.from_hidden(torch.zeros_like(views.global_pad), views.global_pad)
    with torch.no_grad():
        objective.patch_center.fill_(0.25)
    out = objective(batch, views)
    assert out.metrics["loss_mim"] == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in objective.heads.parameters() if p.grad is not None)
    objective.update_centers()
    assert torch.equal(objective.patch_center, torch.full_like(objective.patch_center, 0.25))
    assert objective.center.abs().sum() > 0  # the pooled centre still moves


def test_attention_masking_uses_the_teachers_attention_once():
    objective = build().eval()
    batch = collate_tokens(SAMPLES[:3])
    masker = AttentionMasker(0.5, random_fraction=0.0)
    views = objective.make_mask(batch, masker, torch.Generator().manual_seed(0))
    glob = select_views(batch, views.global_idx, views.global_pad)
    features, scores = objective.teacher.module.attention_scores(glob.values, glob.coords, glob.kinds, glob.pad)
    assert torch.equal(views.mask.hidden, masker.hide_by_scores(glob, scores).hidden)
    torch.testing.assert_close(views.teacher_features, features)
    calls = []
    handle = objective.teacher.module.register_forward_hook(lambda *_: calls.append(1))
    out = objective(batch, views)  # reuses the teacher's features from make_mask
    handle.remove()
    assert not calls
    views.teacher_features = None
    torch.testing.assert_close(objective(batch, views).loss, out.loss)


def test_centres_update_in_training_are_saved_and_the_teacher_follows():
    objective = build(center_momentum=0.5, momentum=0.5)
    batch = collate_tokens(SAMPLES)
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    objective.eval()
    objective(batch, views)
    objective.update_centers()
    assert not objective.center.any() and not objective.patch_center.any()  # evaluation leaves them
    objective.train()
    objective(batch, views).loss.backward()
    assert not objective.center.any()  # the step's sums wait for the optimiser step
    objective.update_centers()
    glob = select_views(batch, views.global_idx, views.global_pad)
    with torch.no_grad():
        teacher = objective.encoder(glob.values, glob.coords, glob.kinds, glob.pad)
        pooled = objective.heads["pooled"](TokenEncoder.pool(teacher, glob.pad))
        patch = objective.heads["pooled"](teacher)[views.mask.hidden]  # the hidden tokens only
    torch.testing.assert_close(objective.center, 0.5 * pooled.mean(0))
    torch.testing.assert_close(objective.patch_center, 0.5 * patch.mean(0))
    assert all(p.grad is not None for p in objective.heads.parameters())
    assert all(not p.requires_grad for p in objective.teacher.parameters())
    assert all(not p.requires_grad for p in objective.teacher_heads.parameters())
    state = objective.state_dict()
    assert {"center", "patch_center", "progress"} <= set(state)
    assert {k[len("teacher.module."):] for k in state if k.startswith("teacher.module.")} == \
        set(objective.encoder.state_dict())
    with torch.no_grad():
        for p in [*objective.encoder.parameters(), *objective.heads.parameters()]:
            p.add_(1.0)
    before = [p.clone() for p in objective.teacher_heads.parameters()]
    objective.after_step(0, 10)  # momentum 0.5
    for old, new, student in zip(before, objective.teacher_heads.parameters(), objective.heads.parameters()):
        torch.testing.assert_close(new, (old + student) / 2)
    fresh = build(center_momentum=0.5, momentum=0.5)
    fresh.load_state_dict(objective.state_dict())
    assert torch.equal(fresh.center, objective.center) and torch.equal(fresh.progress, objective.progress)
    pairs = zip(fresh.teacher_heads.parameters(), objective.teacher_heads.parameters())
    assert all(torch.equal(a, b) for a, b in pairs)


def test_centres_move_once_per_step_over_all_its_micro_batches():
    # The centres follow the global batch of a step, however it is cut into micro-batches (or
    # processes: the sums are all-reduced once): a step's later micro-batches do not see a centre
    # moved by its earlier ones, and the centres move by the mean over all of them.
    objective = build(center_momentum=0.5)
    parts = [collate_tokens(SAMPLES[:2]), collate_tokens(SAMPLES[2:])]
    views = [objective.make_mask(part, RandomMasker(0.5), torch.Generator().manual_seed(k))
             for k, part in enumerate(parts)]
    loss = objective(parts[1], views[1]).loss
    objective(parts[0], views[0])
    assert torch.equal(objective(parts[1], views[1]).loss, loss)  # the centre did not move within the step
    objective.center_sums.zero_()
    pooled, patch = [], []
    for part, view in zip(parts, views):
        objective(part, view)
        glob = select_views(part, view.global_idx, view.global_pad)
        with torch.no_grad():  # at init the teacher is the student
            teacher = objective.encoder(glob.values, glob.coords, glob.kinds, glob.pad)
            pooled.append(objective.heads["pooled"](TokenEncoder.pool(teacher, glob.pad)))
            patch.append(objective.heads["pooled"](teacher)[view.mask.hidden])
    objective.update_centers()
    torch.testing.assert_close(objective.center, 0.5 * torch.cat(pooled).mean(0))
    torch.testing.assert_close(objective.patch_center, 0.5 * torch.cat(patch).mean(0))
    assert not objective.center_sums.any() and "center_sums" not in objective.state_dict()


def test_teacher_temperature_warms_up_with_the_steps():
    objective = build(warmup_teacher_temp=0.02, teacher_temp=0.06, teacher_temp_warmup=0.5)
    assert objective.temperature() == pytest.approx(0.02)
    objective.progress.copy_(torch.tensor([25, 100]))
    assert objective.temperature() == pytest.approx(0.04)
    objective.progress.copy_(torch.tensor([80, 100]))
    assert objective.temperature() == pytest.approx(0.06)


def test_separate_patch_head_and_bad_options():
    objective = build(shared_head=False, patch_out_dim=48)
    assert objective.patch_center.shape == (48,) and "patch" in objective.heads
    batch = collate_tokens(SAMPLES[:2])
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(0))
    objective(batch, views).loss.backward()
    assert all(p.grad is not None for p in objective.heads["patch"].parameters())
    with pytest.raises(RecipeError, match="shared_head"):
        build(patch_out_dim=48)
    with pytest.raises(RecipeError, match="objective.global_scale"):
        build(global_scale=[0.8, 0.4])


def train(tmp_path: Path, recipe: str, objective: str, masker: str, *overrides: str) -> list[dict]:
    return train_cli(tmp_path, recipe, f"objective={objective}", f"masker={masker}", *overrides)


# The teacher is frozen (momentum 1) and uncentred (center_momentum 1): these runs check that the
# whole pipeline (views, MIM masks from either masker, heads, gradients through the student) makes
# the student distil its teacher on digits and on molecules. The full method (EMA teacher and
# centring) is test_full_method_does_not_collapse_on_digits's.
IBOT_TINY = ("{name: ibot, out_dim: 128, hidden_dim: 64, bottleneck_dim: 32, local_views: 2, momentum: 1.0, "
             "center_momentum: 1.0, global_scale: [0.5, 1.0], local_scale: [0.2, 0.4]}")


def kl(row: dict) -> float:
    """The loss above its floor (the teacher's entropies): the KL divergences the student closes."""
    return row["kl_dino"] + row["kl_mim"]


@pytest.mark.parametrize("masker", ["{name: random, ratio: 0.4}", "{name: attention, ratio: 0.4}"],
                         ids=["random", "attention"])
def test_loss_falls_on_digits(tmp_path, masker):
    falls(train(tmp_path, "image/mae-digits", IBOT_TINY, masker, "train.batch_size=32", "train.steps=25"), 0.8, kl)


def test_loss_falls_on_molecules(tmp_path):
    # atoms have continuous 3-D coordinates: the views are neighbourhoods of atoms
    rows = train(tmp_path, "molecule/mae-demo", IBOT_TINY, "{name: attention, ratio: 0.4}", "data.files=[freesolv.csv]",
                 f"data.cache_dir={tmp_path / 'cache'}", "train.batch_size=32", "train.steps=40", "optim.lr=3e-3")
    falls(rows, 0.9, kl)


def test_full_method_does_not_collapse_on_digits(tmp_path):
    # With the EMA teacher and centring, the pooled features of a small untrained encoder are
    # nearly the same for every digit: centring removes the shared part, and without head_norm the
    # teacher's distributions drift to uniform (entropy ~0.8 log K at this size after 40 steps,
    # ~0.99 log K in the digits demo). Standardising the heads' hidden layers over the batch keeps
    # them sharp (~0.35 log K here) and not one-hot, and the student closes part of its KL.
    full = ("{name: ibot, out_dim: 128, hidden_dim: 64, bottleneck_dim: 32, local_views: 2, head_norm: batch, "
            "global_scale: [0.5, 1.0], local_scale: [0.2, 0.4], momentum: 0.99}")
    rows = train(tmp_path, "image/mae-digits", full, "{name: attention, ratio: 0.4}", "train.batch_size=32",
                 "train.steps=40")
    log_k = math.log(128)
    entropy = sum(r["teacher_entropy"] for r in rows[-5:]) / 5
    assert 0.1 * log_k < entropy < 0.6 * log_k, (entropy, log_k)
    falls(rows, 0.95, lambda r: r["kl_dino"])


def test_batch_standardised_heads_ignore_filler_rows():
    head = build(head_norm="batch").heads["pooled"]
    x = torch.randn(2, 5, 32)
    real = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    out = head(x, real)
    poisoned = x.clone()
    poisoned[~real] = 1e4
    torch.testing.assert_close(head(poisoned, real)[real], out[real])  # filler neither counts nor leaks
    pooled = torch.randn(6, 32)  # pooled vectors: every row real, as for a batch without padding
    torch.testing.assert_close(head(pooled), head(pooled[:, None], torch.ones(6, 1, dtype=torch.bool))[:, 0])
    with pytest.raises(RecipeError, match="objective.view_axes"):
        build(view_axes=[])


def test_views_along_some_axes_are_slabs():
    # view_axes [0]: each view is an interval of the first column over every value of the second
    # (on audio, a time segment over all frequencies); only the last, partly filled row may be partial
    objective = build(view_axes=[0], global_scale=[0.4, 0.7], local_scale=[0.2, 0.35])
    batch = collate_tokens([plain_sample(6, s) for s in range(4)])
    views = objective.make_mask(batch, RandomMasker(0.5), torch.Generator().manual_seed(1))
    for idx, pad, times in ((views.global_idx, views.global_pad, 2), (views.local_idx, views.local_pad, 3)):
        coords = gather_rows(batch.coords.repeat_interleave(times, 0), idx)
        for row in range(idx.shape[0]):
            rows = coords[row][~pad[row]][:, 0]
            counts = torch.stack([(rows == r).sum() for r in rows.unique()])
            assert int((counts < 6).sum()) <= 1, counts
            span = rows.unique()
            assert int(span.max() - span.min()) + 1 == span.numel()  # one interval


def centred_teacher_at_init(head_norm: str) -> dict[str, float]:
    """The digits demo's teacher at initialisation on its first 128 digits (global views of seed 0):
    how alike the samples' bottlenecks are, and the entropy of the centred, sharpened teacher."""
    from omnissl.build import build_all
    from omnissl.plugins import get_registry
    from omnissl.recipe import load_recipe
    from omnissl.train.data import TokenDataset, fixed_batches, make_loader

    registry = get_registry()
    recipe = load_recipe("image/ibot-digits", [f"objective.head_norm={head_norm}"], registry)
    torch.manual_seed(recipe.train.seed)
    parts = build_all(recipe, registry)
    objective = parts.objective
    batch = next(iter(make_loader(TokenDataset(parts.dataset, parts.modality), fixed_batches(range(128), 128), 0)))
    views = objective.make_mask(batch, parts.masker, torch.Generator().manual_seed(0))
    glob = select_views(batch, views.global_idx, views.global_pad)
    head = objective.teacher_heads.module["pooled"]
    with torch.no_grad():
        pooled = TokenEncoder.pool(objective.teacher(glob.values, glob.coords, glob.kinds, glob.pad), glob.pad)
        x = pooled
        for layer in head.mlp:
            x = layer(x)
        z = F.normalize(x, dim=-1)
        logits = head(pooled)
        probs = F.softmax((logits - logits.mean(0)) / objective.teacher_temp, dim=-1)
    return {"cosine": float((z @ z.T).mean()), "entropy": float(-(probs * probs.log()).sum(-1).mean()),
            "log_k": math.log(logits.shape[-1])}


def test_centred_teacher_is_flat_at_init_without_batch_standardised_heads():
    # The cause of the DINO term's collapse on digits (docs/objectives.md, iBOT): the pooled features
    # of an untrained encoder are nearly alike, centring removes what they share, and the rest is
    # too small to sharpen. Standardising the heads' hidden layers over the batch keeps a spread.
    plain, standardised = centred_teacher_at_init("none"), centred_teacher_at_init("batch")
    assert plain["cosine"] > 0.9 and plain["entropy"] > 0.95 * plain["log_k"], plain
    assert standardised["cosine"] < 0.5 and 0.2 * plain["log_k"] < standardised["entropy"] < 0.7 * plain["log_k"], \
        standardised
