"""pointing_game / energy_pointing_game against TorchRay's protocol written as a naive
loop, hand-computed cases and Quantus PointingGame / AttributionLocalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.types import Batch

pg = get("pointing_game").fn
epg = get("energy_pointing_game").fn


def make_batch(images, boxes=None, labels=None, difficult=None, masks=None, mask_labels=None,
               scale=(1.0, 1.0), hard=None):
    b, _, h, w = images.shape
    return Batch(images=images, labels=torch.zeros(b, dtype=torch.long), ids=[str(i) for i in range(b)],
                 index=torch.arange(b), boxes=boxes, box_labels=labels, box_difficult=difficult,
                 masks=masks, mask_labels=mask_labels,
                 orig_size=torch.tensor([[round(h * scale[0]), round(w * scale[1])]] * b, dtype=torch.float32),
                 scale=torch.tensor([scale] * b), offset=torch.zeros(b, 2), hard_classes=hard)


# --- TorchRay's protocol as an independent naive loop ------------------------------------

def torchray_point(sal, size):
    s = F.interpolate(sal[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    k = int(s.reshape(-1).argmax())
    return k % size[1], k // size[1]  # (u, v) as TorchRay's _saliency_to_point


def torchray_hit(mask, point, tol=15.0):
    v, u = torch.meshgrid(torch.arange(mask.shape[0]).float(), torch.arange(mask.shape[1]).float(),
                          indexing="ij")
    return bool((mask & ((v - point[1]) ** 2 + (u - point[0]) ** 2 < tol**2)).any())


def naive_box_mask(boxes, size):
    m = torch.zeros(size, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        for v in range(size[0]):
            for u in range(size[1]):
                if x0 <= u + 0.5 < x1 and y0 <= v + 0.5 < y1:
                    m[v, u] = True
    return m


def test_boxes_match_naive_torchray_loop():
    g = torch.Generator().manual_seed(0)
    n, h, w, scale = 8, 12, 18, (1.75, 2.5)
    size = (round(h * scale[0]), round(w * scale[1]))
    x = torch.zeros(n, 3, h, w)
    sal = torch.rand(n, h, w, generator=g)
    boxes, labels, diff = [], [], []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * torch.tensor([w, h])
        wh = torch.rand(3, 2, generator=g) * 4 + 0.3
        boxes.append(torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1))
        labels.append(torch.randint(0, 3, (3,), generator=g))
        diff.append(torch.rand(3, generator=g) < 0.3)
    target = torch.randint(0, 3, (n,), generator=g)
    out = pg(None, x, sal, target, make_batch(x, boxes, labels, diff, scale=scale))["pointing_game"]
    hits, seen = 0, 0
    for i in range(n):
        sel = labels[i] == target[i]
        if not sel.any() or diff[i][sel].all():
            assert torch.isnan(out[i])
            continue
        b = boxes[i][sel] * torch.tensor([scale[1], scale[0]] * 2)
        exp = torchray_hit(naive_box_mask(b, size), torchray_point(sal[i], size))
        assert out[i].item() == float(exp)
        hits, seen = hits + exp, seen + 1
    assert 0 < hits < seen  # the case mixes hits and misses


def test_masks_at_input_resolution_cover_their_footprint():
    g = torch.Generator().manual_seed(1)
    n, h, w, scale = 6, 10, 10, (3.0, 3.0)
    x = torch.zeros(n, 3, h, w)
    sal = torch.rand(n, h, w, generator=g)
    masks = [torch.rand(2, h, w, generator=g) > 0.93 for _ in range(n)]
    mlab = [torch.tensor([0, 1])] * n
    target = torch.tensor([0, 1, 0, 1, 0, 1])
    out = pg(None, x, sal, target, make_batch(x, masks=masks, mask_labels=mlab, scale=scale),
             tolerance=4.0)["pointing_game"]
    for i in range(n):
        small = masks[i][int(target[i])]
        big = small.repeat_interleave(3, 0).repeat_interleave(3, 1)  # 3x3 original pixels each
        assert out[i].item() == float(torchray_hit(big, torchray_point(sal[i], (30, 30)), 4.0))


# --- hand-computed cases -----------------------------------------------------------------

def test_tolerance_is_strict_fifteen_original_pixels():
    x = torch.zeros(2, 3, 40, 40)
    box = torch.tensor([[30.0, 10.0, 32.0, 12.0]])  # GT pixels: cols 30-31, rows 10-11
    sal = torch.zeros(2, 40, 40)
    sal[0, 10, 15] = 1  # 15 px left of the box: not strictly within 15 -> miss
    sal[1, 10, 16] = 1  # 14 px -> hit
    batch = make_batch(x, [box, box], [torch.tensor([4])] * 2, hard=[torch.tensor([4]), torch.tensor([])])
    out = pg(None, x, sal, torch.tensor([4, 4]), batch)
    assert out["pointing_game"].tolist() == [0.0, 1.0]
    assert out["pointing_game_y"].tolist() == [10.0, 10.0] and out["pointing_game_x"].tolist() == [15.0, 16.0]
    assert out["pointing_game_difficult"][0].item() == 0.0 and torch.isnan(out["pointing_game_difficult"][1])
    # The same geometry at half resolution with scale 2: the tolerance stays 15 ORIGINAL px.
    small = torch.zeros(1, 20, 20)
    small[0, 5, 3] = 1  # upsampled argmax lands near original (10, 6-7): > 15 px -> miss
    half = make_batch(torch.zeros(1, 3, 20, 20), [box / 2], [torch.tensor([4])], scale=(2.0, 2.0))
    assert pg(None, half.images, small, torch.tensor([4]), half)["pointing_game"].item() == 0.0
    small[0, 5, 3], small[0, 5, 8] = 0, 1  # near original (10, 16-17): hit
    assert pg(None, half.images, small, torch.tensor([4]), half)["pointing_game"].item() == 1.0


def test_difficult_only_classes_skipped_and_union_otherwise():
    x = torch.zeros(2, 3, 40, 40)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [30.0, 30.0, 40.0, 40.0]])
    sal = torch.zeros(2, 40, 40)
    sal[:, 35, 35] = 1  # points into the difficult box
    batch = make_batch(x, [boxes] * 2, [torch.tensor([1, 1])] * 2,
                       [torch.tensor([True, True]), torch.tensor([False, True])])
    out = pg(None, x, sal, torch.tensor([1, 1]), batch)["pointing_game"]
    assert torch.isnan(out[0]) and out[1].item() == 1.0


def test_constant_and_nan_maps():
    x = torch.zeros(2, 3, 40, 40)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    sal = torch.zeros(2, 40, 40)
    sal[1, 0, 0] = float("nan")
    out = pg(None, x, sal, torch.tensor([0, 0]), make_batch(x, [box] * 2, [torch.tensor([0])] * 2))
    # A constant map points at its first pixel (argmax convention): (0, 0) here -> a hit.
    assert out["pointing_game"][0].item() == 1.0 and out["pointing_game_x"][0].item() == 0.0
    assert torch.isnan(out["pointing_game"][1])


# --- peers: Quantus ----------------------------------------------------------------------

def test_quantus_pointing_game_on_nonempty_masks_and_its_empty_mask_defect():
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(3)
    n = 12
    x = torch.zeros(n, 3, 16, 16)
    sal = torch.rand(n, 16, 16, generator=g)  # distinct values: one argmax
    masks = [(torch.rand(1, 16, 16, generator=g) > 0.6) for _ in range(n)]
    masks[5][:] = False  # an empty mask
    target = torch.zeros(n, dtype=torch.long)
    batch = make_batch(x, masks=masks, mask_labels=[torch.tensor([0])] * n)
    ours = pg(None, x, sal, target, batch, tolerance=0.5)["pointing_game"].numpy()
    s = torch.stack([m[0] for m in masks])[:, None].float().numpy()
    theirs = np.asarray(quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=sal[:, None].numpy(),
        s_batch=s), dtype=float)
    keep = np.arange(n) != 5
    assert np.array_equal(ours[keep], theirs[keep]) and 0 < ours[keep].sum() < keep.sum()
    # Documented defect: Quantus writes NaN into a bool array, which stores True: a hit.
    assert np.isnan(ours[5]) and theirs[5] == 1.0


def test_energy_pointing_game_by_hand_and_against_quantus():
    x = torch.zeros(4, 3, 4, 4)
    box = torch.tensor([[1.0, 1.0, 3.0, 3.0]])  # 4 of 16 pixels
    sal = torch.ones(4, 4, 4)
    sal[1] = -1
    sal[1, 1:3, 1:3] = 2.0
    sal[2] = 0
    sal[3] = -1
    batch = make_batch(x, [box] * 4, [torch.tensor([0])] * 4)
    out = epg(None, x, sal, torch.zeros(4, dtype=torch.long), batch)["energy_pointing_game"]
    # uniform: 4/16; negatives ignored: 8/8; no positive energy: the area fraction 4/16.
    assert out.tolist() == pytest.approx([0.25, 1.0, 0.25, 0.25])
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(4)
    sal = torch.randn(6, 16, 16, generator=g)
    boxes = [torch.tensor([[2.0, 3.0, 11.0, 9.0]])] * 6
    xb = torch.zeros(6, 3, 16, 16)
    ours = epg(None, xb, sal, torch.zeros(6, dtype=torch.long),
               make_batch(xb, boxes, [torch.tensor([0])] * 6))["energy_pointing_game"].numpy()
    s = np.zeros((6, 1, 16, 16))
    s[:, :, 3:9, 2:11] = 1
    theirs = quantus.AttributionLocalisation(positive_attributions=True, abs=False, normalise=False,
                                             disable_warnings=True)(
        model=None, x_batch=xb.numpy(), y_batch=np.zeros(6, dtype=int), a_batch=sal[:, None].numpy(), s_batch=s)
    assert np.abs(ours - np.asarray(theirs)).max() < 1e-6


def test_bad_tolerance_missing_batch_and_missing_ground_truth_are_errors():
    x = torch.zeros(2, 3, 12, 16)
    h, t = torch.rand(2, 12, 16), torch.tensor([0, 1])
    b = make_batch(x, boxes=[torch.tensor([[0.0, 0.0, 16.0, 12.0]])] * 2,
                   labels=[torch.tensor([0]), torch.tensor([1])])
    assert pg(None, x, h, t, b, tolerance=0.5)["pointing_game"].tolist() == [1.0, 1.0]
    for tol in (0.0, -5.0):  # TorchRay's strict d^2 < tol^2 would silently miss everything
        with pytest.raises(ConfigError, match=f"tolerance={tol}"):
            pg(None, x, h, t, b, tolerance=tol)
    for fn in (pg, epg):
        with pytest.raises(ConfigError, match="needs the batch's ground truth"):
            fn(None, x, h, t, None)
        with pytest.raises(ConfigError, match="ground_truth='masks' but the batch has no masks; valid here: auto, boxes"):
            fn(None, x, h, t, b, ground_truth="masks")
