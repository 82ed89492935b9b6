"""Known-truth metrics and the model contrast against hand-computed cases and naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faithbench.errors import ConfigError
from faithbench.metrics.pointing import energy_pointing_game
from faithbench.metrics.truth import cue_mass, cue_pointing_game, near
from faithbench.report.truth import model_contrast
from faithbench.types import Batch

NAN = float("nan")


def toy_batch(masks: list[torch.Tensor], labels: list[list[int]], hw: int = 4) -> Batch:
    n = len(masks)
    return Batch(images=torch.zeros(n, 3, hw, hw), labels=torch.tensor([max(lab) for lab in labels]),
                 ids=[str(i) for i in range(n)], index=torch.arange(n), masks=masks,
                 mask_labels=[torch.tensor(lab) for lab in labels])


def grid(cells: list[tuple[int, int]], hw: int = 4) -> torch.Tensor:
    m = torch.zeros(hw, hw, dtype=torch.bool)
    for y, x in cells:
        m[y, x] = True
    return m


@pytest.fixture
def one():
    """4x4, used cue (label 2) at (0,0),(0,1); unused cue (label -3) at (3,3)."""
    masks = [torch.stack([grid([(0, 0), (0, 1)]), grid([(3, 3)])])]
    return toy_batch(masks, [[2, -3]])


def test_cue_mass_by_hand(one):
    h = torch.zeros(1, 4, 4)
    h[0, 0, 0], h[0, 0, 1], h[0, 3, 3], h[0, 2, 2], h[0, 1, 1] = 3.0, 1.0, 2.0, 4.0, -5.0
    out = cue_mass(None, one.images, h, torch.tensor([2]), one)
    # positive mass 3 + 1 + 2 + 4 = 10; the negative pixel does not count
    assert out["cue_mass"].item() == pytest.approx(0.4)
    assert out["cue_mass_other"].item() == pytest.approx(0.2)
    assert out["cue_mass_chance"].item() == pytest.approx(2 / 16)


def test_cue_mass_degenerate_maps_and_missing_ground_truth(one):
    x, t = one.images, torch.tensor([2])
    for h in (torch.zeros(1, 4, 4), -torch.ones(1, 4, 4), torch.full((1, 4, 4), 2.0)):  # uniform
        out = cue_mass(None, x, h, t, one)
        assert out["cue_mass"].item() == pytest.approx(2 / 16)
        assert out["cue_mass_other"].item() == pytest.approx(1 / 16)
    h = torch.ones(1, 4, 4)
    h[0, 2, 2] = NAN
    assert all(math.isnan(v.item()) for v in cue_mass(None, x, h, t, one).values())
    out = cue_mass(None, x, torch.rand(1, 4, 4), torch.tensor([0]), one)  # class without a mask
    assert math.isnan(out["cue_mass"].item()) and math.isnan(out["cue_mass_chance"].item())
    assert not math.isnan(out["cue_mass_other"].item())


def test_cue_mass_ignores_a_constant_offset(one):
    g = torch.Generator().manual_seed(3)
    h = torch.rand(1, 4, 4, generator=g)
    h[0, 2, 3] = 0.0  # the map reaches 0: relu(map) - min = relu(map)
    x, t = one.images, torch.tensor([2])
    ref = cue_mass(None, x, h, t, one)
    for shifted in (h + 5.0, h.clamp(min=0) + 0.25):
        out = cue_mass(None, x, shifted, t, one)
        torch.testing.assert_close(out["cue_mass"], ref["cue_mass"])
        torch.testing.assert_close(out["cue_mass_other"], ref["cue_mass_other"])
    e = h[0].clamp(min=0)  # by hand: the share on (0,0),(0,1)
    assert ref["cue_mass"].item() == pytest.approx(float((e[0, 0] + e[0, 1]) / e.sum()), rel=1e-6)


def test_cue_mass_equals_the_energy_pointing_game_on_the_used_cue():
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(2, 8, 8, generator=g) > 0.7 for _ in range(5)]
    b = toy_batch(masks, [[1, -2], [-1, 0], [3, -4], [-5, 2], [0, -1]], hw=8)
    target = torch.tensor([1, 0, 3, 2, 0])
    h = torch.randn(5, 8, 8, generator=g)  # every row has negatives: min(relu) = 0
    ours = cue_mass(None, b.images, h, target, b)["cue_mass"]
    ref = energy_pointing_game(None, b.images, h, target, b, ground_truth="masks")["energy_pointing_game"]
    torch.testing.assert_close(ours, ref)


def test_cue_pointing_game_by_hand(one):
    x, t = one.images, torch.tensor([2])
    h = torch.zeros(1, 4, 4)
    h[0, 1, 2] = 1.0  # point (1,2): sqrt(2) from the cue pixel (0,1)
    out = cue_pointing_game(None, x, h, t, one, tolerance=1.5)
    assert out["cue_pointing_game"].item() == 1.0
    assert (out["cue_pointing_game_y"].item(), out["cue_pointing_game_x"].item()) == (1.0, 2.0)
    assert cue_pointing_game(None, x, h, t, one, tolerance=1.0)["cue_pointing_game"].item() == 0.0
    # within 1.5 of the cue: rows 0-1, columns 0-2 (6 pixels) of 16
    assert out["cue_pointing_game_chance"].item() == pytest.approx(6 / 16)
    assert out["cue_pointing_game_other"].item() == 0.0
    h = torch.zeros(1, 4, 4)
    h[0, 3, 3] = 1.0
    out = cue_pointing_game(None, x, h, t, one, tolerance=0.0)
    assert out["cue_pointing_game"].item() == 0.0 and out["cue_pointing_game_other"].item() == 1.0
    assert out["cue_pointing_game_chance"].item() == pytest.approx(2 / 16)
    const = cue_pointing_game(None, x, torch.ones(1, 4, 4), t, one, tolerance=0.0)
    assert const["cue_pointing_game_y"].item() == 0.0 == const["cue_pointing_game_x"].item()  # ties
    assert const["cue_pointing_game"].item() == 1.0
    one.scale, one.offset = torch.tensor([[2.0, 3.0]]), torch.tensor([[1.0, 0.5]])
    moved = cue_pointing_game(None, x, h, t, one)  # point (3,3) in original pixels
    assert (moved["cue_pointing_game_y"].item(), moved["cue_pointing_game_x"].item()) == (8.0, 10.5)
    with pytest.raises(ConfigError, match="tolerance"):
        cue_pointing_game(None, x, h, t, one, tolerance=-1.0)


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5, 2.0, 2.5, 3.2])
def test_near_equals_a_naive_distance_loop(tol):
    g = torch.Generator().manual_seed(1)
    region = torch.rand(9, 11, generator=g) > 0.9
    pts = region.nonzero().tolist()
    ref = torch.tensor([[any((y - v) ** 2 + (x - u) ** 2 <= tol**2 for v, u in pts)
                         for x in range(11)] for y in range(9)])
    assert torch.equal(near(region, tol), ref)


def test_model_contrast_by_hand():
    # shape model: 0.6 on the shape, 0.1 on the marker; marker model: 0.3 on the
    # marker, 0.2 on the shape -> ((0.6 - 0.2) + (0.3 - 0.1)) / 2 = 0.3
    c = model_contrast(np.array([0.6]), np.array([0.1]), np.array([0.3]), np.array([0.2]))
    assert c.tolist() == pytest.approx([0.3])
    same = np.array([0.4, 0.7])  # the same map for both models: zero whatever it is
    other = np.array([0.1, 0.2])
    assert model_contrast(same, other, other, same).tolist() == [0.0, 0.0]
    assert model_contrast(np.ones(1), np.zeros(1), np.ones(1), np.zeros(1)).tolist() == [1.0]
