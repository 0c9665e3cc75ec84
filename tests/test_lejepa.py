"""LeJEPA: SIGReg's statistic, views in token space, and a falling loss on images and molecules."""

from pathlib import Path

import pytest
import torch

from objective_kit import SPEC, Toy, falls, grid_sample, train_cli

from omnissl import collate_tokens
from omnissl.encoders import TokenEncoder
from omnissl.maskers import MultiBlockMasker, RandomMasker
from omnissl.objectives import LeJEPA
from omnissl.objectives.lejepa import T_MAX, epps_pulley, random_directions, sigreg

def build(**options) -> LeJEPA:
    torch.manual_seed(0)
    encoder = TokenEncoder(SPEC, None, dim=32, depth=2, heads=4)
    return LeJEPA(encoder, Toy(), proj_dim=16, proj_hidden=64, **options)


def gaussian_level() -> float:
    """E[statistic] for Gaussian draws: integral of (1 - e^{-t^2}) e^{-t^2/2} over [-T_MAX, T_MAX]."""
    t = torch.linspace(-T_MAX, T_MAX, 20001, dtype=torch.float64)
    return float(torch.trapezoid((1 - torch.exp(-t * t)) * torch.exp(-0.5 * t * t), t))


def test_epps_pulley_is_about_one_for_gaussians_and_grows_with_n_otherwise():
    g = torch.Generator().manual_seed(0)
    level = gaussian_level()
    for n in (200, 2000):
        gaussian = epps_pulley(torch.randn(n, 64, generator=g)).mean()
        assert abs(float(gaussian) - level) < 0.25 * level, (n, float(gaussian), level)
        collapsed = epps_pulley(torch.zeros(n, 4)).mean()  # every draw at 0: |ecf - cf| is 1 - e^{-t^2/2}
        assert float(collapsed) > 0.35 * n
        wide = epps_pulley(3 * torch.randn(n, 64, generator=g)).mean()  # Gaussian, but not unit variance
        assert float(wide) > 0.1 * n


def test_sigreg_small_at_isotropic_gaussian_large_when_collapsed_or_anisotropic():
    g = torch.Generator().manual_seed(1)
    directions = random_directions(32, 256, torch.device("cpu"), g)
    z = torch.randn(2, 1000, 32, generator=g)
    isotropic = float(sigreg(z, directions))
    assert isotropic < 1.25 * gaussian_level()
    assert float(sigreg(z * 0.05, directions)) > 100 * isotropic  # shrunk toward a point
    assert float(sigreg(z[..., :1].expand(-1, -1, 32), directions)) > 50 * isotropic  # one direction only
    assert float(sigreg(z + 2.0, directions)) > 100 * isotropic  # off-centre
    # invalid rows are left out exactly; a view with fewer than two valid rows does not count
    valid = torch.ones(2, 1000, dtype=torch.bool)
    valid[0, 500:] = False
    poisoned = z.clone()
    poisoned[0, 500:] = 1e3
    expected = (epps_pulley(z[0, :500] @ directions).mean() + epps_pulley(z[1] @ directions).mean()) / 2
    torch.testing.assert_close(sigreg(poisoned, directions, valid), expected)
    valid[1, 1:] = False
    torch.testing.assert_close(sigreg(poisoned, directions, valid), epps_pulley(z[0, :500] @ directions).mean())


def test_prediction_pulls_every_view_to_the_mean_of_the_global_views():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 5, 8, generator=g)  # two global views: the loss is |z1 - z2|^2 / 4
    valid = torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(LeJEPA.prediction_loss(z, valid, 2), ((z[0] - z[1]) ** 2).mean() / 4)
    z = torch.randn(4, 5, 8, generator=g)  # one global view (a context block) and three local ones
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[3, 0] = False
    gaps = ((z[1:] - z[0]) ** 2).mean(-1)  # [3, 5]
    expected = (gaps.sum() - gaps[2, 0]) / (4 * 5 - 1)  # the context's own gap is 0, the empty view left out
    torch.testing.assert_close(LeJEPA.prediction_loss(z, valid, 1), expected)


def test_views_come_from_the_mask():
    objective = build()
    batch = collate_tokens([grid_sample(6, s) for s in range(4)])
    blocks = MultiBlockMasker(num_targets=3)(batch, torch.Generator().manual_seed(0))
    global_views, local_views = objective.views(blocks)
    assert len(global_views) == 1 and len(local_views) == 3  # the context, and each target block
    assert torch.equal(global_views[0][0], blocks.visible_idx)
    assert torch.equal(local_views[2][0], blocks.target_idx[:, 2])
    halves = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    global_views, local_views = objective.views(halves)
    assert len(global_views) == 2 and not local_views  # visible and hidden: two disjoint subsets


@pytest.mark.parametrize("masker", [MultiBlockMasker(), RandomMasker(0.5)], ids=["multiblock", "random"])
def test_padding_is_ignored_and_every_view_trains_the_encoder(masker):
    objective = build().eval()
    samples = [grid_sample(4, 0), grid_sample(6, 1), grid_sample(5, 2), grid_sample(1, 3)]  # one of 1 token
    batch = collate_tokens(samples)
    mask = masker(batch, torch.Generator().manual_seed(0))
    out = objective(batch, mask)
    assert torch.isfinite(out.loss) and set(out.metrics) == {"loss", "loss_prediction", "sigreg"}
    assert torch.equal(objective(batch, mask).loss, out.loss)  # fixed directions when evaluating
    poisoned = collate_tokens(samples)
    poisoned.values[batch.pad] = 1e4
    torch.testing.assert_close(objective(poisoned, mask).loss, out.loss)
    # no stop-gradient anywhere: the loss reaches the encoder through the global and the local views
    objective.train()
    objective(batch, mask).loss.backward()
    assert objective.encoder.value_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in objective.projector.parameters())
    assert not hasattr(objective, "reconstruct") and not hasattr(objective, "after_step")


def test_training_draws_fresh_directions_from_the_global_seed():
    objective = build()
    batch = collate_tokens([grid_sample(5, s) for s in range(8)])
    mask = MultiBlockMasker()(batch, torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    a = objective(batch, mask).metrics["sigreg"]
    torch.manual_seed(5)
    b = objective(batch, mask).metrics["sigreg"]
    torch.manual_seed(6)
    c = objective(batch, mask).metrics["sigreg"]
    assert torch.equal(a, b) and not torch.equal(a, c)


# Registers the multiblock masker and the lejepa objective for the CLI runs below, unless the core
# registers them itself (omnissl.builtin).
LEJEPA_ARGS = ["objective={name: lejepa, proj_dim: 16, proj_hidden: 64}", "masker={name: multiblock}"]


def train(tmp_path: Path, recipe: str, *overrides: str) -> list[dict]:
    return train_cli(tmp_path, recipe, *LEJEPA_ARGS, *overrides)


def test_loss_falls_on_digits(tmp_path):
    rows = train(tmp_path, "image/mae-digits", "train.batch_size=64", "train.steps=40")
    falls(rows, 0.85)
    assert rows[-1]["sigreg"] < rows[0]["sigreg"]


def test_loss_falls_on_molecules(tmp_path):
    # atoms have continuous 3-D coordinates: the blocks are neighbourhoods of atoms
    rows = train(tmp_path, "molecule/mae-demo", "data.files=[freesolv.csv]", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.batch_size=32", "train.steps=100", "optim.lr=3e-3")
    falls(rows, 0.85)
