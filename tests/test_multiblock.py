"""The multi-block masker (I-JEPA): context and target blocks on grids of any dimension, on
continuous coordinates (neighbourhoods) and on mixed ones (EEG's sensor positions and time)."""

import pytest
import torch

from omnissl import CoordGroup, Modality, Tokens, TokenSpec, collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.errors import RecipeError
from omnissl.maskers import MultiBlockMask, MultiBlockMasker
from omnissl.objectives import MAE


def grid(*shape: int) -> Tokens:
    axes = torch.meshgrid(*(torch.arange(s) for s in shape), indexing="ij")
    coords = torch.stack(axes, -1).reshape(-1, len(shape)).float()
    return Tokens(values=torch.randn(len(coords), 4), coords=coords)


def cloud(n: int, seed: int) -> Tokens:
    """Atoms or point groups: real-valued 3-D positions."""
    g = torch.Generator().manual_seed(seed)
    return Tokens(values=torch.randn(n, 4, generator=g), coords=torch.randn(n, 3, generator=g) * 2.5)


def montage(sensors: int, times: int, seed: int) -> Tokens:
    """EEG-like: each token is one sensor (a point on a sphere) at one time step."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.nn.functional.normalize(torch.randn(sensors, 3, generator=g), dim=1)
    coords = torch.cat([xyz.repeat_interleave(times, 0), torch.arange(times).repeat(sensors)[:, None].float()], 1)
    return Tokens(values=torch.randn(len(coords), 4), coords=coords)


def sets(mask: MultiBlockMask, b: int) -> tuple[set[int], list[set[int]]]:
    context = set(mask.visible_idx[b][~mask.visible_pad[b]].tolist())
    targets = [set(mask.target_idx[b, k][~mask.target_pad[b, k]].tolist()) for k in range(mask.num_targets)]
    return context, targets


BATCHES = {
    "time": lambda: collate_tokens([grid(40), grid(23)]),
    "image": lambda: collate_tokens([grid(14, 14), grid(8, 12), grid(5, 5)]),
    "volume": lambda: collate_tokens([grid(6, 7, 8), grid(4, 4, 4)]),
    "atoms": lambda: collate_tokens([cloud(60, 0), cloud(23, 1), cloud(41, 2)]),
    "eeg": lambda: collate_tokens([montage(19, 12, 0), montage(8, 20, 1)]),
}


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_never_padding_context_excludes_targets_and_scales_are_hit(kind):
    batch = BATCHES[kind]()
    masker = MultiBlockMasker(num_targets=4, target_scale=[0.15, 0.2], context_scale=[0.85, 1.0])
    for seed in range(5):
        mask = masker(batch, torch.Generator().manual_seed(seed))
        assert isinstance(mask, MultiBlockMask) and mask.num_targets == 4
        for b in range(batch.batch_size):
            n = int((~batch.pad[b]).sum())
            padding = set(batch.pad[b].nonzero().squeeze(1).tolist())
            context, targets = sets(mask, b)
            union = set().union(*targets)
            assert not (context | union) & padding
            assert context and not context & union  # the context excludes every target (I-JEPA)
            for target in targets:  # each target holds round(scale * n) tokens, scale in its range
                assert 0.15 * n - 0.5 <= len(target) <= 0.2 * n + 0.5, (kind, b, len(target), n)
            # the context block had round(scale * n) tokens, scale in [0.85, 1], before the targets left it
            assert round(0.85 * n) - len(union) <= len(context) <= n - len(union)
            # one mask for objectives that want one: hidden = union of targets, visible = context
            assert set(mask.hidden[b].nonzero().squeeze(1).tolist()) == union
            assert set(mask.hidden_idx[b][~mask.hidden_pad[b]].tolist()) == union


def test_whole_context_leaves_exactly_the_non_targets_visible():
    for batch in (collate_tokens([grid(10, 10), grid(7, 9)]), collate_tokens([cloud(30, 3), cloud(20, 4)])):
        mask = MultiBlockMasker(num_targets=3, context_scale=[1.0, 1.0])(batch, torch.Generator().manual_seed(0))
        for b in range(2):
            context, targets = sets(mask, b)
            real = set((~batch.pad[b]).nonzero().squeeze(1).tolist())
            assert context == real - set().union(*targets)


@pytest.mark.parametrize("shape", [(30,), (12, 12), (6, 6, 6)])
def test_grid_targets_are_boxes(shape):
    batch = collate_tokens([grid(*shape)])
    masker = MultiBlockMasker(num_targets=4, target_scale=[0.1, 0.3])
    for seed in range(5):
        mask = masker(batch, torch.Generator().manual_seed(seed))
        for target in sets(mask, 0)[1]:
            pts = batch.coords[0, sorted(target)]
            sides = pts.amax(0) - pts.amin(0) + 1
            box = int(sides.prod())
            # a box, with at most its last face partly filled: no scattered cells
            assert len(target) <= box <= len(target) + int(box / sides.min()), (shape, sides.tolist(), len(target))


def test_aspect_is_height_over_width_on_images():
    batch = collate_tokens([grid(40, 40)])
    for aspect, rows_over_cols in ((3.0, 3.0), (1 / 3, 1 / 3), (1.0, 1.0)):
        masker = MultiBlockMasker(num_targets=4, target_scale=[0.1, 0.1], target_aspect=[aspect, aspect])
        for target in sets(masker(batch, torch.Generator().manual_seed(0)), 0)[1]:
            pts = batch.coords[0, sorted(target)]
            rows, cols = (pts.amax(0) - pts.amin(0) + 1).tolist()
            assert rows_over_cols / 1.5 < rows / cols < rows_over_cols * 1.5, (aspect, rows, cols)


def test_continuous_targets_are_neighbourhoods():
    batch = collate_tokens([cloud(80, 5), cloud(50, 6)])
    masker = MultiBlockMasker(num_targets=4, target_scale=[0.1, 0.3])
    mask = masker(batch, torch.Generator().manual_seed(0))
    for b in range(2):
        real = (~batch.pad[b]).nonzero().squeeze(1).tolist()
        pts = batch.coords[b]
        for target in sets(mask, b)[1]:
            outside = [i for i in real if i not in target]
            # some token of the block has every block token nearer than every other token: a kNN ball
            assert any(torch.cdist(pts[[c]], pts[sorted(target)]).max() <= torch.cdist(pts[[c]], pts[outside]).min()
                       for c in target)


def test_mixed_coordinates_give_sensor_patches_over_time_intervals():
    batch = collate_tokens([montage(30, 16, 0)])
    masker = MultiBlockMasker(num_targets=4, target_scale=[0.15, 0.2])
    for seed in range(3):
        for target in sets(masker(batch, torch.Generator().manual_seed(seed)), 0)[1]:
            pts = batch.coords[0, sorted(target)]
            times = torch.unique(pts[:, 3])
            sensors = torch.unique(pts[:, :3], dim=0)
            assert torch.equal(times, torch.arange(int(times.min()), int(times.max()) + 1).float())  # an interval
            # a sensor patch times an interval, at most one face partly filled
            assert len(sensors) * len(times) <= len(target) + max(len(sensors), len(times))
            assert 1 < len(times) < 16 and 1 < len(sensors) < 30  # a block along both, not a slab


def test_axes_choose_the_columns_that_span_blocks():
    batch = collate_tokens([grid(6, 20)])  # (frequency, time): blocks of time over every frequency
    mask = MultiBlockMasker(num_targets=2, target_scale=[0.3, 0.3], axes=[-1])(batch, torch.Generator().manual_seed(0))
    for target in sets(mask, 0)[1]:
        cells = batch.coords[0, sorted(target)]
        per_time = torch.bincount(cells[:, 1].long(), minlength=20)
        assert (per_time[per_time > 0] == 6).sum() >= len(per_time.nonzero()) - 1  # whole columns but the last
    with pytest.raises(RecipeError, match=r"masker.axes=\[2\] but tokens have 2 coordinate columns"):
        MultiBlockMasker(axes=[2])(batch, torch.Generator().manual_seed(0))


def test_tiny_samples_keep_a_context_and_non_empty_targets():
    for batch in (collate_tokens([grid(1), grid(2), grid(3)]), collate_tokens([cloud(1, 0), cloud(2, 1)])):
        for seed in range(10):
            mask = MultiBlockMasker(num_targets=4)(batch, torch.Generator().manual_seed(seed))
            for b in range(batch.batch_size):
                context, targets = sets(mask, b)
                assert context, b
                n = int((~batch.pad[b]).sum())
                assert all(targets) if n >= 2 else not any(targets)


def test_seeded_and_device_move_keeps_the_blocks():
    batch = BATCHES["image"]()
    masker = MultiBlockMasker()
    a = masker(batch, torch.Generator().manual_seed(3))
    b = masker(batch, torch.Generator().manual_seed(3))
    c = masker(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a.target_idx, b.target_idx) and torch.equal(a.hidden, b.hidden)
    assert not torch.equal(a.hidden, c.hidden)
    moved = a.to("cpu")
    assert isinstance(moved, MultiBlockMask) and torch.equal(moved.target_pad, a.target_pad)
    assert torch.equal(masker.hidden(batch, torch.Generator().manual_seed(3)), a.hidden)


@pytest.mark.parametrize("options,pattern", [
    ({"target_scale": [0.3, 0.1]}, r"masker.target_scale must be \[low, high\] with 0 < low <= high <= 1"),
    ({"context_scale": [0.5, 1.5]}, r"masker.context_scale must be \[low, high\]"),
    ({"target_aspect": [0.0, 1.0]}, r"masker.target_aspect must be \[low, high\] with 0 < low <= high"),
    ({"num_targets": 0}, r"masker.num_targets must be >= 1"),
    ({"axes": []}, r"masker.axes is empty"),
])
def test_bad_options_name_the_key(options, pattern):
    with pytest.raises(RecipeError, match=pattern):
        MultiBlockMasker(**options)


def test_one_mask_objectives_train_on_it():
    class Toy(Modality):
        def spec(self) -> TokenSpec:
            return TokenSpec(value_dim=4, coords=(CoordGroup("grid", 2),))

    torch.manual_seed(0)
    objective = MAE(TokenEncoder(Toy().spec(), None, dim=16, depth=1, heads=2), Toy(), decoder_dim=16,
                    decoder_depth=1, decoder_heads=2)
    batch = collate_tokens([grid(8, 8), grid(5, 7)])
    mask = MultiBlockMasker()(batch, torch.Generator().manual_seed(0))
    out = objective(batch, mask)
    assert torch.isfinite(out.loss)
    poisoned = collate_tokens([grid(8, 8), grid(5, 7)])
    poisoned.values = batch.values.clone()
    dropped = ~mask.hidden & ~batch.pad
    dropped[0, mask.visible_idx[0][~mask.visible_pad[0]]] = False
    dropped[1, mask.visible_idx[1][~mask.visible_pad[1]]] = False
    assert dropped.any()
    poisoned.values[dropped] = 1e4  # tokens in neither block: MAE neither sees nor scores them
    assert torch.allclose(objective.eval()(poisoned, mask).loss, objective(batch, mask).loss)
