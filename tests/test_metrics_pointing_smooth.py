"""pointing_game(smooth=...): TorchRay's Gaussian post-processing of gradient maps at the
original image size, against scipy's Gaussian filter and TorchRay's pipeline as a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics.pointing import gaussian_smooth
from faithbench.types import Batch

pg = get("pointing_game").fn


@pytest.mark.parametrize("sigma", [0.7, 2.0, 3.3, 7.46])
def test_gaussian_smooth_equals_scipy_with_replicated_borders(sigma):
    m = torch.rand(37, 52, generator=torch.Generator().manual_seed(1))
    ref = ndimage.gaussian_filter(m.double().numpy(), sigma, mode="nearest",
                                  radius=math.ceil(4 * sigma))
    assert np.abs(gaussian_smooth(m, sigma).numpy() - ref).max() < 1e-6


def test_gaussian_smooth_of_zero_sigma_and_constant_maps():
    m = torch.rand(5, 6)
    assert torch.equal(gaussian_smooth(m, 0.0), m)
    c = torch.full((9, 4), 3.0)  # replicate borders: a constant stays constant
    assert torch.allclose(gaussian_smooth(c, 5.0), c)


def batch(h, w, boxes, scale):
    return Batch(images=torch.zeros(len(boxes), 3, h, w), labels=torch.zeros(len(boxes)),
                 ids=[str(i) for i in range(len(boxes))], index=torch.arange(len(boxes)),
                 boxes=[b[None] for b in boxes], box_labels=[torch.zeros(1, dtype=torch.long)] * len(boxes),
                 box_difficult=[torch.zeros(1, dtype=torch.bool)] * len(boxes),
                 scale=torch.tensor([scale] * len(boxes)), offset=torch.zeros(len(boxes), 2))


def torchray_hit(sal, box, size, smooth, tol=15.0):
    """TorchRay: resize to the image, imsmooth(sigma=smooth*max), argmax, 15-px disc
    against the box's pixels (an independent loop over scipy)."""
    s = F.interpolate(sal[None, None].double(), size=size, mode="bilinear", align_corners=False)[0, 0]
    sigma = smooth * max(size)
    s = ndimage.gaussian_filter(s.numpy(), sigma, mode="nearest", radius=math.ceil(4 * sigma))
    v, u = divmod(int(s.argmax()), size[1])
    x0, y0, x1, y1 = box.tolist()
    for yy in range(size[0]):
        for xx in range(size[1]):
            inside = x0 <= xx + 0.5 <= x1 and y0 <= yy + 0.5 <= y1
            if inside and (yy - v) ** 2 + (xx - u) ** 2 < tol**2:
                return 1.0
    return 0.0


def test_smoothing_moves_the_point_from_a_spike_to_a_broad_bump():
    """One hot pixel far from the object vs a broad bump on it: the raw argmax misses,
    the smoothed one hits (the reason TorchRay smooths gradient maps)."""
    h, w = 40, 60
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    sal = 0.5 * torch.exp(-((yy - 30) ** 2 + (xx - 45) ** 2) / (2 * 6.0**2))
    sal[3, 4] = 1.0
    box = torch.tensor([35.0, 22.0, 55.0, 38.0])  # input pixels; scale 2 -> 80 x 120 image
    b = batch(h, w, [box], (2.0, 2.0))
    t = torch.zeros(1, dtype=torch.long)
    raw = pg(None, b.images, sal[None], t, b, tolerance=5.0)["pointing_game"]
    smooth = pg(None, b.images, sal[None], t, b, tolerance=5.0, smooth=0.02)["pointing_game"]
    assert raw.item() == 0.0 and smooth.item() == 1.0
    assert torchray_hit(sal, box * 2, (80, 120), 0.02, tol=5.0) == 1.0


def test_smoothed_pointing_equals_torchray_loop_on_random_maps():
    g = torch.Generator().manual_seed(0)
    h, w, scale = 24, 32, (1.5, 1.5)
    maps = torch.rand(12, h, w, generator=g) ** 4
    boxes = []
    for _ in range(12):
        x0, y0 = float(torch.randint(0, 40, (1,), generator=g)), float(torch.randint(0, 28, (1,), generator=g))
        boxes.append(torch.tensor([x0, y0, x0 + 6.0, y0 + 5.0]))  # original pixels
    b = batch(h, w, [bx / 1.5 for bx in boxes], scale)
    out = pg(None, b.images, maps, torch.zeros(12, dtype=torch.long), b, tolerance=6.0, smooth=0.05)
    ref = [torchray_hit(maps[i], boxes[i], (36, 48), 0.05, tol=6.0) for i in range(12)]
    assert out["pointing_game"].tolist() == ref
    assert 0 < sum(ref) < 12  # the case mixes hits and misses


def test_bad_smooth_is_a_clear_error():
    b = batch(8, 8, [torch.tensor([0.0, 0.0, 4.0, 4.0])], (1.0, 1.0))
    with pytest.raises(ConfigError, match="smooth=-0.1"):
        pg(None, b.images, torch.rand(1, 8, 8), torch.zeros(1, dtype=torch.long), b, smooth=-0.1)
