"""box_localisation / max_box_acc against a naive loop (scipy's labelling, IoU by hand),
a transcription of wsolevaluation's thresholding, and hand-computed maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics.localisation import curve_max, kept, scaled_maps
from faithbench.types import Batch

loc = get("box_localisation").fn
mba = get("max_box_acc").fn


class FixedLogits(nn.Module):
    """Logits that rank classes in the given order for every image (first = top-1)."""

    def __init__(self, order, k=8):
        super().__init__()
        self.register_buffer("z", torch.zeros(k).index_put_((torch.tensor(order),),
                                                             torch.arange(len(order), 0, -1).float()))

    def forward(self, x):
        return self.z.expand(x.shape[0], -1)


def make_batch(n, size, boxes, labels):
    return Batch(images=torch.zeros(n, 3, size, size), labels=torch.zeros(n, dtype=torch.long),
                 ids=[str(i) for i in range(n)], index=torch.arange(n), boxes=boxes, box_labels=labels,
                 orig_size=torch.full((n, 2), float(size)), scale=torch.ones(n, 2), offset=torch.zeros(n, 2))


def two_blobs():
    h = torch.zeros(1, 8, 8)
    h[0, 1, 1] = h[0, 2, 2] = h[0, 3, 3] = 1.0  # one component only under 8-connectivity
    h[0, 1, 3] = h[0, 3, 1] = 0.5
    h[0, 6, 6] = h[0, 6, 7] = 0.9  # a smaller component
    return h


def test_box_localisation_by_hand():
    h = two_blobs()
    x = torch.zeros(1, 3, 8, 8)
    for gt, hit, iou in [([1, 1, 4, 4], 1.0, 1.0), ([0, 0, 4, 4], 1.0, 9 / 16), ([0, 0, 5, 5], 0.0, 9 / 25)]:
        batch = make_batch(1, 8, [torch.tensor([gt], dtype=torch.float32)], [torch.tensor([2])])
        out = loc(FixedLogits([2, 0, 1]), x, h, torch.tensor([2]), batch)
        assert out["box_localisation"].item() == hit
        assert out["box_localisation_iou"].item() == pytest.approx(iou)
        assert [out[f"box_localisation_{k}"].item() for k in ("x0", "y0", "x1", "y1")] == [1, 1, 4, 4]
        assert out["box_localisation_top1_error"].item() == 1 - hit
    # Above 0.5 of the range only the diagonal and the small blob remain: still the diagonal.
    batch = make_batch(1, 8, [torch.tensor([[1.0, 1.0, 4.0, 4.0]])], [torch.tensor([2])])
    out = loc(FixedLogits([0, 1, 2, 3, 4, 5]), x, h, torch.tensor([2]), batch, threshold=0.6)
    assert out["box_localisation"].item() == 1.0
    # Right box, wrong top-1 class but within top-5: top-1 error 1, top-5 error 0.
    assert out["box_localisation_top1_error"].item() == 1.0
    assert out["box_localisation_top5_error"].item() == 0.0
    out = loc(FixedLogits([0, 1, 3, 4, 5, 2]), x, h, torch.tensor([2]), batch)
    assert out["box_localisation_top5_error"].item() == 1.0


def naive_localise(sal, gts, t, iou_thr=0.5, rule="max"):
    """The papers' rule (``max``: above t of the max value) or wsolevaluation's min-max
    map above t, both strict as cvThreshold / cv2.threshold."""
    if rule == "max":
        on = sal > t * sal.max()
    else:
        on = (sal - sal.min()) / (sal.max() - sal.min()) > t
    lab, n = ndimage.label(on, structure=np.ones((3, 3)))
    if n == 0:
        return 0.0, 0.0
    sizes = [(lab == k).sum() for k in range(1, n + 1)]
    rows, cols = np.nonzero(lab == 1 + int(np.argmax(sizes)))
    box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    best = 0.0
    for g in gts:
        iw = max(0.0, min(box[2], g[2]) - max(box[0], g[0]))
        ih = max(0.0, min(box[3], g[3]) - max(box[1], g[1]))
        union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
        best = max(best, iw * ih / union)
    return float(best >= iou_thr), best


def random_case(seed, n=5, size=20):
    """Smooth noise plus a bump over the class-0 box, so hits and misses both occur."""
    g = torch.Generator().manual_seed(seed)
    boxes, labels, bumps = [], [], []
    for _ in range(n):
        xy = torch.rand(2, 2, generator=g) * size * 0.5
        b = torch.cat([xy, xy + 4 + torch.rand(2, 2, generator=g) * size * 0.4], 1).clamp(max=size)
        boxes.append(b)
        labels.append(torch.tensor([0, 1]))
        m = torch.zeros(size, size)
        x0, y0, x1, y1 = b[0].round().long().tolist()
        m[y0:y1, x0:x1] = 1
        bumps.append(m)
    noise = torch.rand(n, 1, size, size, generator=g) * 1.5
    sal = torch.nn.functional.avg_pool2d(noise + torch.stack(bumps)[:, None], 3, 1, 1)[:, 0]
    return sal, boxes, labels


@pytest.mark.parametrize("rule", ["max", "minmax"])
def test_box_localisation_matches_naive_loop(tiny_cnn, rule):
    sal, boxes, labels = random_case(0)
    sal = sal - 0.3  # signed maps, so the two rules differ
    target = torch.tensor([0, 1, 0, 1, 3])  # class 3 has no box: NaN
    x = torch.randn(5, 3, 20, 20)
    batch = make_batch(5, 20, boxes, labels)
    out = loc(tiny_cnn, x, sal, target, batch, threshold=0.4, threshold_rule=rule)
    for i in range(4):
        gts = boxes[i][labels[i] == target[i]].tolist()
        hit, iou = naive_localise(sal[i].double().numpy(), gts, 0.4, rule=rule)
        assert out["box_localisation"][i].item() == hit
        assert out["box_localisation_iou"][i].item() == pytest.approx(iou, abs=1e-6)
    assert 0 < out["box_localisation"][:4].sum() < 4
    other = loc(tiny_cnn, x, sal, target, batch, threshold=0.4,
                threshold_rule="minmax" if rule == "max" else "max")
    assert not torch.equal(other["box_localisation_iou"][:4], out["box_localisation_iou"][:4])
    assert torch.isnan(out["box_localisation"][4]) and torch.isnan(out["box_localisation_top1_error"][4])


@pytest.mark.parametrize("rule", ["minmax", "max"])
def test_max_box_acc_curve_matches_naive_loop_and_box_localisation(tiny_cnn, rule):
    sal, boxes, labels = random_case(1)
    target = torch.tensor([0, 1, 0, 1, 0])
    batch = make_batch(5, 20, boxes, labels)
    curve = mba(None, None, sal, target, batch, num_thresholds=20,
                threshold_rule=rule)["max_box_acc_curve"]
    assert curve.shape == (5, 20)
    for i in range(5):
        gts = boxes[i][labels[i] == target[i]].tolist()
        exp = [naive_localise(sal[i].double().numpy(), gts, j / 20, rule=rule)[0] for j in range(20)]
        assert curve[i].tolist() == exp
    assert 0 < curve.sum() < curve.numel()
    at = loc(tiny_cnn, torch.zeros(5, 3, 20, 20), sal, target, batch, threshold=0.15,
             threshold_rule=rule)
    full = mba(None, None, sal, target, batch, threshold_rule=rule)["max_box_acc_curve"]
    assert torch.equal(full[:, 15], at["box_localisation"])


def wsol_kept(scoremap, tau):
    """wsolevaluation's evaluation.compute_bboxes_from_scoremaps, the thresholding part:
    uint8 map, cv2.threshold(thresh=int(tau * max), THRESH_BINARY), i.e. strictly above."""
    cv2 = pytest.importorskip("cv2")
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, thr = cv2.threshold(src=image, thresh=int(tau * np.max(image)), maxval=255,
                           type=cv2.THRESH_BINARY)
    return thr > 0


def test_minmax_threshold_is_wsolevaluations_but_for_uint8_rounding():
    sal = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(4)) - 0.2
    sal[0, :6] = sal[0].min()  # a flat minimum region: kept under >= at tau = 0, not under >
    s, _ = scaled_maps(sal, "minmax")
    band = 0
    for i in range(3):
        scoremap = s[i].astype(np.float32)  # wsolevaluation's normalize_scoremap output
        for tau in np.arange(0, 1, 0.01):
            ours, theirs = kept(s[i], tau), wsol_kept(scoremap, tau)
            # uint8 truncation drops pixels in (tau, (floor(255 tau) + 1) / 255]: nothing else.
            edge = (np.floor(255 * tau) + 1) / 255
            in_band = (s[i] > tau) & (s[i] < edge + 1e-6)
            assert np.array_equal(ours & ~in_band, theirs & ~in_band)
            assert not (theirs & ~ours).any()
            band += int((ours != theirs).sum())
    assert band > 0


def test_strict_threshold_and_the_two_rules_by_hand(tiny_cnn):
    # Row 0: values 4, 2, 1, 0, -4 (one per column pair); t = 0.25 of the max is 1.0 and
    # 0.25 of the range [-4, 4] is -2.
    h = torch.tensor([[4.0, 4.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0, -4.0, -4.0]]).expand(10, 10)[None].clone()
    x = torch.zeros(1, 3, 10, 10)
    batch = make_batch(1, 10, [torch.tensor([[0.0, 0.0, 4.0, 10.0]])], [torch.tensor([0])])
    t = torch.tensor([0])
    out = loc(tiny_cnn, x, h, t, batch, threshold=0.25)
    # max: keep > 1.0 (the tie at exactly 1.0 is dropped): columns 0-3, IoU 1.
    assert [out[f"box_localisation_{k}"].item() for k in ("x0", "y0", "x1", "y1")] == [0, 0, 4, 10]
    assert out["box_localisation"].item() == 1.0
    out = loc(tiny_cnn, x, h, t, batch, threshold=0.25, threshold_rule="minmax")
    # minmax: keep > -2 + ... = (h + 4) / 8 > 0.25, i.e. h > -2: columns 0-7, IoU 0.5.
    assert out["box_localisation_x1"].item() == 8 and out["box_localisation_iou"].item() == 0.5
    assert out["box_localisation"].item() == 1.0
    out = loc(tiny_cnn, x, h, t, batch, threshold=0.5)  # keep > 2: only columns 0-1
    assert out["box_localisation_x1"].item() == 2
    with pytest.raises(ConfigError, match="'range'.*max.*minmax"):
        loc(tiny_cnn, x, h, t, batch, threshold_rule="range")


def test_curve_max_is_a_dataset_level_max():
    curve = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [float("nan")] * 3])
    # Per threshold accuracy 2/3 each: MaxBoxAcc 2/3 at the first; the per-sample oracle
    # (best threshold per image) would claim 1.
    assert curve_max(curve) == (pytest.approx(2 / 3), 0)
    assert np.isnan(curve_max(torch.full((2, 3), float("nan")))[0])


def test_degenerate_maps_and_bad_thresholds(tiny_cnn):
    box = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])] * 4
    batch = make_batch(4, 8, box, [torch.tensor([0])] * 4)
    h = torch.zeros(4, 8, 8)
    h[1] = 5.0
    h[2, 0, 0] = float("nan")
    h[3] = -1.0
    h[3, 0, 0] = -2.0  # all negative, not constant
    x = torch.zeros(4, 3, 8, 8)
    t = torch.zeros(4, dtype=torch.long)
    # minmax: constant maps give no box (even at threshold 0, where the whole image would
    # match). max: the all-zero map keeps nothing (max <= 0); the constant positive map is
    # t * max everywhere below its value, so the whole image is kept (CAM's map / max = 1).
    for rule, const in (("minmax", [0.0, 0.0]), ("max", [0.0, 1.0])):
        out = loc(tiny_cnn, x, h, t, batch, threshold=0.0, threshold_rule=rule)
        assert out["box_localisation"][:2].tolist() == const and torch.isnan(out["box_localisation"][2])
        curve = mba(None, x, h, t, batch, threshold_rule=rule)["max_box_acc_curve"]
        assert (curve[:2] == torch.tensor(const)[:, None]).all() and torch.isnan(curve[2]).all()
    # max <= 0 keeps nothing under "max"; under "minmax" all but the minimum pixel remain.
    assert loc(tiny_cnn, x, h, t, batch, threshold=0.0)["box_localisation"][3].item() == 0.0
    assert loc(tiny_cnn, x, h, t, batch, threshold=0.0,
               threshold_rule="minmax")["box_localisation"][3].item() == 1.0
    with pytest.raises(ConfigError, match="threshold=1.5"):
        loc(tiny_cnn, x, h, torch.zeros(3, dtype=torch.long), batch, threshold=1.5)
    for fn in (loc, mba):
        with pytest.raises(ConfigError, match="needs the batch's ground truth"):
            fn(tiny_cnn, x, h, torch.zeros(3, dtype=torch.long), None)
