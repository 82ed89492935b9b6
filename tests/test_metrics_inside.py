"""relevance_mass_accuracy, relevance_rank_accuracy, attribution_localisation and
top_k_intersection against Quantus 0.6 on the same maps and masks, naive loops written
from the papers, and hand-computed degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.types import Batch

quantus = pytest.importorskip("quantus")
H, W = 12, 20  # non-square


def fn(name):
    return get(name).fn


def make_batch(masks, mask_labels=None, boxes=None, box_labels=None):
    b = len(masks) if masks is not None else len(boxes)
    x = torch.zeros(b, 3, H, W)
    return Batch(images=x, labels=torch.zeros(b, dtype=torch.long), ids=[str(i) for i in range(b)],
                 index=torch.arange(b), masks=masks, mask_labels=mask_labels, boxes=boxes,
                 box_labels=box_labels)


def scene(n=10, seed=0):
    """Per sample two random masks (classes 0 and 1) and a per-sample target."""
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(2, H, W, generator=g) > torch.tensor([0.7, 0.5])[:, None, None] for _ in range(n)]
    target = torch.randint(0, 2, (n,), generator=g)
    gt = torch.stack([m[t] for m, t in zip(masks, target.tolist())])
    return make_batch(masks, [torch.tensor([0, 1])] * n), target, gt


def run_quantus(cls, sal, gt, **kw):
    n = sal.shape[0]
    return np.asarray(cls(disable_warnings=True, **kw)(
        model=None, x_batch=np.zeros((n, 3, H, W), dtype=np.float32), y_batch=np.zeros(n, dtype=int),
        a_batch=sal[:, None].numpy(), s_batch=gt[:, None].float().numpy()), dtype=float)


# --- relevance mass accuracy ----------------------------------------------------------------

@pytest.mark.parametrize("relevance,abs_", [("signed", False), ("absolute", True)])
def test_mass_accuracy_matches_quantus(relevance, abs_):
    batch, target, gt = scene()
    sal = torch.rand(10, H, W, generator=torch.Generator().manual_seed(1)) - 0.2
    ours = fn("relevance_mass_accuracy")(None, batch.images, sal, target, batch,
                                         relevance=relevance)["relevance_mass_accuracy"].numpy()
    theirs = run_quantus(quantus.RelevanceMassAccuracy, sal, gt, abs=abs_, normalise=False)
    assert np.abs(ours - theirs).max() < 1e-5


def test_mass_accuracy_positive_is_a_naive_loop_over_pixels():
    batch, target, gt = scene(seed=2)
    sal = torch.randn(10, H, W, generator=torch.Generator().manual_seed(3))
    ours = fn("relevance_mass_accuracy")(None, batch.images, sal, target, batch)["relevance_mass_accuracy"]
    for i in range(10):
        inside = total = 0.0
        for v in range(H):
            for u in range(W):
                r = max(float(sal[i, v, u]), 0.0)
                total += r
                inside += r if gt[i, v, u] else 0.0
        assert ours[i].item() == pytest.approx(inside / total, abs=1e-6)


def test_mass_accuracy_degenerate_maps_and_missing_class():
    box = [torch.tensor([[0.0, 0.0, 5.0, 12.0]])]  # 5 of 20 columns
    batch = make_batch(None, boxes=box * 4, box_labels=[torch.tensor([0])] * 4)
    sal = torch.zeros(4, H, W)
    sal[1] = 3.0
    sal[2] = -1.0
    sal[3, 0, 0] = float("nan")
    out = fn("relevance_mass_accuracy")(None, batch.images, sal, torch.tensor([0, 0, 0, 1]),
                                        batch)["relevance_mass_accuracy"]
    assert out[:3].tolist() == pytest.approx([0.25, 0.25, 0.25]) and torch.isnan(out[3])


# --- relevance rank accuracy ----------------------------------------------------------------

def test_rank_accuracy_matches_quantus_on_distinct_values():
    batch, target, gt = scene(seed=4)
    sal = torch.randn(10, H, W, generator=torch.Generator().manual_seed(5))
    ours = fn("relevance_rank_accuracy")(None, batch.images, sal, target, batch)["relevance_rank_accuracy"]
    theirs = run_quantus(quantus.RelevanceRankAccuracy, sal, gt, abs=False, normalise=False)
    assert np.abs(ours.numpy() - theirs).max() < 1e-6 and 0 < ours.min() < ours.max() < 1


def test_rank_accuracy_stable_ties_match_a_naive_loop():
    batch, target, gt = scene(seed=6)
    sal = torch.randint(0, 3, (10, H, W), generator=torch.Generator().manual_seed(7)).float()
    ours = fn("relevance_rank_accuracy")(None, batch.images, sal, target, batch,
                                         ties="stable")["relevance_rank_accuracy"]
    for i in range(10):
        pixels = sorted(range(H * W), key=lambda p: (-float(sal[i].flatten()[p]), p))
        k = int(gt[i].sum())
        hits = sum(bool(gt[i].flatten()[p]) for p in pixels[:k])
        assert ours[i].item() == pytest.approx(hits / k)


def test_rank_accuracy_random_ties_are_seeded_per_sample():
    batch, target, _ = scene(seed=8)
    sal = torch.zeros(10, H, W)  # all ties: about the area fraction, by chance alone
    f = fn("relevance_rank_accuracy")
    a = f(None, batch.images, sal, target, batch, seed=1)["relevance_rank_accuracy"]
    b = f(None, batch.images, sal, target, batch, seed=1)["relevance_rank_accuracy"]
    c = f(None, batch.images, sal, target, batch, seed=2)["relevance_rank_accuracy"]
    sub = make_batch(batch.masks[3:5], batch.mask_labels[3:5])
    sub.index = torch.tensor([3, 4])
    d = f(None, sub.images, sal[3:5], target[3:5], sub, seed=1)["relevance_rank_accuracy"]
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(a[3:5], d)
    assert torch.isfinite(a).all()


# --- attribution localisation ---------------------------------------------------------------

def box_scene(n=8, seed=9):
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.randint(0, 10, (2, 2), generator=g).float()
        wh = torch.randint(2, 9, (2, 2), generator=g).float()
        boxes.append(torch.cat([xy, xy + wh], 1).clamp(max=torch.tensor([W, H, W, H]).float()))
        labels.append(torch.tensor([0, 1]))
    target = torch.randint(0, 2, (n,), generator=g)
    gt = torch.zeros(n, H, W, dtype=torch.bool)
    for i, t in enumerate(target.tolist()):
        x0, y0, x1, y1 = (int(v) for v in boxes[i][t].tolist())
        gt[i, y0:y1, x0:x1] = True
    return make_batch(None, boxes=boxes, box_labels=labels), target, gt


def test_attribution_localisation_matches_quantus_and_the_energy_pointing_game():
    batch, target, gt = box_scene()
    sal = torch.randn(8, H, W, generator=torch.Generator().manual_seed(10))
    out = fn("attribution_localisation")(None, batch.images, sal, target, batch)
    theirs = run_quantus(quantus.AttributionLocalisation, sal, gt, positive_attributions=True,
                         abs=False, normalise=False)
    assert np.abs(out["attribution_localisation"].numpy() - theirs).max() < 1e-6
    epg = fn("energy_pointing_game")(None, batch.images, sal, target, batch)["energy_pointing_game"]
    assert torch.allclose(out["attribution_localisation"], epg, atol=1e-6)
    # The paper's weighted ratio mu * S_tot / S_in, transcribed; Quantus multiplies by
    # size_bbox / x_batch[2:].size instead (the wrong way round, and a batch slice).
    area = gt.flatten(1).sum(1).double()
    paper = out["attribution_localisation"].double() * (H * W) / area
    assert torch.allclose(out["attribution_localisation_weighted"].double(), paper, rtol=1e-5)
    quantus_w = run_quantus(quantus.AttributionLocalisation, sal, gt, positive_attributions=True,
                            abs=False, normalise=False, weighted=True)
    assert np.abs(quantus_w - theirs * area.numpy() / (6 * 3 * H * W)).max() < 1e-6


def test_attribution_localisation_uniform_map_weights_to_one():
    batch, target, _ = box_scene(n=3)
    out = fn("attribution_localisation")(None, batch.images, torch.ones(3, H, W), target, batch)
    assert out["attribution_localisation_weighted"].tolist() == pytest.approx([1.0] * 3)


# --- top-k intersection ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 17, 100])
def test_top_k_intersection_matches_quantus(k):
    batch, target, gt = scene(seed=11)
    sal = torch.randn(10, H, W, generator=torch.Generator().manual_seed(12))
    out = fn("top_k_intersection")(None, batch.images, sal, target, batch, k=k)
    theirs = run_quantus(quantus.TopKIntersection, sal, gt, k=k, abs=False, normalise=False)
    infl = run_quantus(quantus.TopKIntersection, sal, gt, k=k, abs=False, normalise=False,
                       concept_influence=True)
    assert np.abs(out["top_k_intersection"].numpy() - theirs).max() < 1e-6
    assert np.abs(out["top_k_intersection_influence"].numpy() - infl).max() < 1e-5


def test_top_k_intersection_k_beyond_the_map_takes_every_pixel():
    batch, target, gt = scene(n=4, seed=13)
    out = fn("top_k_intersection")(None, batch.images, torch.rand(4, H, W), target, batch, k=10_000)
    assert out["top_k_intersection"].double().tolist() == pytest.approx(gt.flatten(1).double().mean(1).tolist())
    assert out["top_k_intersection_influence"].tolist() == pytest.approx([1.0] * 4)


def test_bad_relevance_and_missing_batch_are_errors():
    batch, target, _ = scene(n=2)
    with pytest.raises(ConfigError, match="relevance"):
        fn("relevance_mass_accuracy")(None, batch.images, torch.rand(2, H, W), target, batch,
                                      relevance="neg")
    with pytest.raises(ConfigError, match="batch"):
        fn("top_k_intersection")(None, batch.images, torch.rand(2, H, W), target, None)


# --- segmentation IoU -----------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["max", "minmax"])
def test_segmentation_iou_matches_sklearn_jaccard(rule):
    from sklearn.metrics import jaccard_score

    batch, target, gt = scene(seed=14)
    sal = torch.randn(10, H, W, generator=torch.Generator().manual_seed(15))
    out = fn("segmentation_iou")(None, batch.images, sal, target, batch, threshold=0.3,
                                 threshold_rule=rule)["segmentation_iou"]
    for i in range(10):
        m = sal[i].double()
        cut = 0.3 * m.max() if rule == "max" else m.min() + 0.3 * (m.max() - m.min())
        pred = (m > cut).flatten().numpy()
        assert out[i].item() == pytest.approx(jaccard_score(gt[i].flatten().numpy(), pred), abs=1e-6)


def test_segmentation_iou_degenerate_maps():
    batch, target, gt = scene(n=3, seed=16)
    sal = torch.stack([torch.zeros(H, W), torch.full((H, W), 2.0), torch.full((H, W), -1.0)])
    f = fn("segmentation_iou")
    area = gt.flatten(1).double().mean(1)
    assert f(None, batch.images, sal, target, batch)["segmentation_iou"].double().tolist() == \
        pytest.approx([0.0, area[1].item(), 0.0])
    assert f(None, batch.images, sal, target, batch,
             threshold_rule="minmax")["segmentation_iou"].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="threshold_rule"):
        f(None, batch.images, sal, target, batch, threshold_rule="mean")
