"""pointing_game's tolerance as a share of the image (``tolerance_unit="fraction"``),
against TorchRay's hit rule written as a naive loop with the tolerance scaled by hand."""

from __future__ import annotations

import pytest
import torch
from test_metrics_pointing import make_batch, naive_box_mask, torchray_hit, torchray_point

from faithbench.errors import ConfigError
from faithbench.metrics import get

pg = get("pointing_game").fn


def test_fraction_equals_torchray_loop_with_the_tolerance_scaled_by_hand():
    g = torch.Generator().manual_seed(7)
    n, h, w, scale = 10, 16, 24, (2.0, 1.5)
    size = (round(h * scale[0]), round(w * scale[1]))  # (32, 36): longer side 36
    x = torch.zeros(n, 3, h, w)
    sal = torch.rand(n, h, w, generator=g)
    boxes = []
    for _ in range(n):
        xy = torch.rand(2, 2, generator=g) * torch.tensor([w, h])
        boxes.append(torch.cat([xy, (xy + 3.0).minimum(torch.tensor([w, h]))], 1))
    labels = [torch.tensor([0, 0])] * n
    target = torch.zeros(n, dtype=torch.long)
    batch = make_batch(x, boxes, labels, scale=scale)
    out = pg(None, x, sal, target, batch, tolerance=0.1, tolerance_unit="fraction")["pointing_game"]
    px = pg(None, x, sal, target, batch, tolerance=15.0)["pointing_game"]
    exp = []
    for i in range(n):
        mask = naive_box_mask(boxes[i] * torch.tensor([scale[1], scale[0]] * 2), size)
        exp.append(float(torchray_hit(mask, torchray_point(sal[i], size), 0.1 * 36)))
    assert out.tolist() == exp
    assert 0 < sum(exp) < n and out.sum() < px.sum()  # 3.6 px is stricter than 15 px


def test_fraction_on_a_64_pixel_scene_by_hand():
    """The shapes case: 15 px around the centre covers a quarter of a 64 x 64 image; 0.03
    of 64 px is 1.92 px, so only the 8 neighbours of the point count."""
    x = torch.zeros(3, 3, 64, 64)
    box = torch.tensor([[40.0, 31.0, 44.0, 35.0]])  # GT pixels: cols 40-43, rows 31-34
    sal = torch.zeros(3, 64, 64)
    sal[0, 32, 32] = 1  # the centre: 8 px from the box
    sal[1, 33, 38] = 1  # 2 px left of column 40: 2 >= 1.92 -> miss
    sal[2, 30, 39] = 1  # one diagonal step from (31, 40): sqrt(2) < 1.92 -> hit
    b = make_batch(x, [box] * 3, [torch.tensor([2])] * 3)
    t = torch.full((3,), 2)
    assert pg(None, x, sal, t, b)["pointing_game"].tolist() == [1.0, 1.0, 1.0]
    out = pg(None, x, sal, t, b, tolerance=0.03, tolerance_unit="fraction")["pointing_game"]
    assert out.tolist() == [0.0, 0.0, 1.0]


def test_bad_unit_and_fraction_above_one_are_errors():
    x = torch.zeros(1, 3, 8, 8)
    b = make_batch(x, [torch.tensor([[0.0, 0.0, 2.0, 2.0]])], [torch.tensor([0])])
    args = (None, x, torch.rand(1, 8, 8), torch.tensor([0]), b)
    with pytest.raises(ConfigError, match="tolerance_unit 'pixels'.*Valid choices: fraction, px"):
        pg(*args, tolerance_unit="pixels")
    with pytest.raises(ConfigError, match=r"tolerance=15.0 is out of range for tolerance_unit='fraction'; valid: \(0, 1\]"):
        pg(*args, tolerance=15.0, tolerance_unit="fraction")
