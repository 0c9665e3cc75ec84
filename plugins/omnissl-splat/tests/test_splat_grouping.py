"""FPS + kNN grouping and the Chamfer / paired attribute losses."""

from __future__ import annotations

import pytest
import torch

from omnissl_splat.grouping import farthest_point_sample, group_points, knn
from omnissl_splat.losses import GaussianGroupLoss, chamfer_l2


def test_fps_returns_distinct_indices_that_cover_the_object() -> None:
    torch.manual_seed(0)
    points = torch.rand(2, 2000, 3)
    valid = torch.ones(2, 2000, dtype=torch.bool)
    idx, found = farthest_point_sample(points, valid, 64)
    assert found.all() and all(len(set(row.tolist())) == 64 for row in idx)
    centres = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
    covering = torch.cdist(points, centres).min(-1).values.max()  # farthest any point is from a centre
    random_pick = points[:, torch.randperm(2000)[:64]]
    assert covering < torch.cdist(points, random_pick).min(-1).values.max()
    assert covering < 0.35  # 64 well-spread centres in the unit cube


def test_fps_and_knn_never_pick_padding() -> None:
    torch.manual_seed(0)
    points = torch.randn(2, 100, 3)
    valid = torch.ones(2, 100, dtype=torch.bool)
    valid[1, 10:] = False  # the second object has 10 real points
    points[1, 10:] = 100.0  # padding far away: FPS would love it
    groups = group_points(points, valid, num_groups=16, group_size=20)
    assert (groups.centres[1] < 10).all() and (groups.members[1] < 10).all()
    assert groups.empty[1].sum() == 6 and not groups.empty[0].any()
    assert len(set(groups.centres[1, :10].tolist())) == 10


def test_feature_space_grouping_uses_the_given_features() -> None:
    xyz = torch.zeros(1, 6, 3)
    features = torch.tensor([[[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]]])
    idx = knn(features[:, :1], features, torch.ones(1, 6, dtype=torch.bool), 3)
    assert sorted(idx[0, 0].tolist()) == [0, 1, 2]
    groups = group_points(xyz, torch.ones(1, 6, dtype=torch.bool), 2, 3, features=features)
    assert {tuple(sorted(m)) for m in groups.members[0].tolist()} == {(0, 1, 2), (3, 4, 5)}


def test_chamfer_is_zero_for_identical_sets_and_symmetric() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 16, 3), torch.randn(5, 16, 3)
    assert torch.allclose(chamfer_l2(a, a[:, torch.randperm(16)])[0], torch.zeros(5), atol=1e-6)
    assert torch.allclose(chamfer_l2(a, b)[0], chamfer_l2(b, a)[0], atol=1e-6)
    assert (chamfer_l2(a, b)[0] > 0).all()


def test_attributes_are_paired_by_nearest_position() -> None:
    torch.manual_seed(0)
    target = torch.rand(3, 8, 14)
    target[..., 7:11] = torch.nn.functional.normalize(target[..., 7:11], dim=-1)
    shuffled = target[:, torch.randperm(8)].clone()
    shuffled[..., 7:11] *= -1  # q and -q are the same rotation
    loss = GaussianGroupLoss({"xyz": 1, "opacity": 1, "scale": 1, "rotation": 1, "colour": 1})
    assert torch.allclose(loss(shuffled.reshape(3, -1), target.reshape(3, -1)), torch.zeros(3), atol=1e-5)
    wrong_colour = shuffled.clone()
    wrong_colour[..., 11:] += 0.2
    terms = loss.terms(wrong_colour.reshape(3, -1), target.reshape(3, -1))
    assert torch.allclose(terms["colour"], torch.full((3,), 0.2), atol=1e-5)
    assert torch.allclose(terms["xyz"], torch.zeros(3), atol=1e-6)


def test_unknown_loss_term_is_a_recipe_error() -> None:
    from omnissl.errors import RecipeError

    with pytest.raises(RecipeError, match="colour"):
        GaussianGroupLoss({"color": 1.0})
