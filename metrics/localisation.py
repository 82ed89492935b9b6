"""Box localisation from a thresholded map: CAM (Zhou et al., CVPR 2016), Grad-CAM
(Selvaraju et al., ICCV 2017) and MaxBoxAcc (Choe et al., CVPR 2020).

Threshold rules (``threshold_rule``), both strict ``>`` as every released code that
thresholds (CAM's dt_box: cvThreshold BINARY; wsolevaluation: cv2.threshold BINARY):

- ``max``: keep ``map > t * max(map)`` of the raw map, the papers' "t of the max value"
  (CAM Sec. 3: 20 %; Grad-CAM Sec. 4.1: 15 %). CAM's ILSVRC script divides the map by its
  max too (``alignImgMean./max(alignImgMean(:))``, negatives clipped when written as
  uint8). A map with max <= 0 keeps nothing; a constant positive map keeps everything.
- ``minmax``: keep ``map > lo + t * (max - lo)`` (wsolevaluation's ``normalize_scoremap``
  before thresholding). A constant map keeps nothing.

The two agree on maps whose minimum is 0 (ReLU'd maps with a zero pixel); they differ on
signed CAMs and on Grad-CAM maps whose upsampled minimum is above 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from skimage.measure import label
from torch import Tensor, nn

from faithbench import aggregate, schema
from faithbench.aggregate import Aggregation
from faithbench.errors import check_choice
from faithbench.metrics import register
from faithbench.metrics._common import clean, nan_where, need_batch, predictions
from faithbench.ops import minmax
from faithbench.params import Count, Fraction, UnitInterval
from faithbench.types import Batch

NAN = float("nan")
ThresholdRule = Literal["max", "minmax"]
THRESHOLD_RULES = ["max", "minmax"]


def kept(scaled: np.ndarray, t: float) -> np.ndarray:
    """Pixels of a ``scaled_maps`` map [H,W] kept at threshold ``t``: strictly above it,
    as cvThreshold(THRESH_BINARY) in CAM's dt_box and cv2.threshold in wsolevaluation."""
    return scaled > t


def component_box(binary: np.ndarray) -> tuple[float, float, float, float] | None:
    """xyxy box (pixel edges) of the largest 8-connected component of ``binary`` [H,W];
    ties go to the component met first in raster order; None if nothing is on."""
    lab = label(binary, connectivity=2)
    if lab.max() == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    rows, cols = np.nonzero(lab == int(sizes.argmax()))
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def best_iou(box: tuple[float, float, float, float] | None, gt: Tensor) -> float:
    """Largest IoU of ``box`` with any of the xyxy boxes ``gt`` [N,4]; 0 without a box."""
    if box is None:
        return 0.0
    b = torch.tensor(box, dtype=torch.float64)
    g = gt.double()
    iw = (torch.minimum(b[2], g[:, 2]) - torch.maximum(b[0], g[:, 0])).clamp(min=0)
    ih = (torch.minimum(b[3], g[:, 3]) - torch.maximum(b[1], g[:, 1])).clamp(min=0)
    inter = iw * ih
    union = (b[2] - b[0]) * (b[3] - b[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
    return float((inter / union.clamp(min=1e-12)).max())


def class_boxes(batch: Batch, i: int, t: int) -> Tensor | None:
    if batch.boxes is None or batch.box_labels is None:
        return None
    sel = batch.box_labels[i].cpu() == t
    return batch.boxes[i].cpu()[sel] if bool(sel.any()) else None


def scaled_maps(heatmap: Tensor, rule: str) -> tuple[np.ndarray, Tensor]:
    """(maps [B,H,W] as float64 numpy, scaled so that a pixel is kept at threshold t when
    its value is ``> t``; [B] finite rows). ``max``: map / max (signed; zeros where max
    <= 0); ``minmax``: min-max to [0, 1] (zeros for a constant map). See module doc."""
    check_choice("threshold_rule", rule, THRESHOLD_RULES)
    h, ok = clean(heatmap)
    h = h.double()
    if rule == "minmax":
        return minmax(h).cpu().numpy(), ok
    hi = h.flatten(1).amax(1)[:, None, None]
    pos = hi > 0
    s = torch.where(pos, h / torch.where(pos, hi, torch.ones_like(hi)), torch.zeros_like(h))
    return s.cpu().numpy(), ok


@register(higher_is_better=True, needs={"boxes"},
          outputs={"box_localisation_iou": True, "box_localisation_top1_error": False,
                   "box_localisation_top5_error": False})
def box_localisation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                     batch: Batch, threshold: UnitInterval = 0.15, threshold_rule: ThresholdRule = "max",
                     iou_threshold: Fraction = 0.5, chunk: Count = 128) -> dict[str, Tensor]:
    """Threshold localisation (CAM/Grad-CAM papers): keep pixels ``> threshold * max``
    of the map (Grad-CAM 0.15, CAM 0.20; ``threshold_rule="max"``) or above that share
    of its min-max range (``"minmax"``, see module doc), box the largest 8-connected
    component, and hit when its IoU with any ground-truth box of the target class is
    ``>= iou_threshold``.

    Args:
        x: [B,C,H,W] input (one forward for the top-1/top-5 classes); heatmap: [B,H,W];
        target: [B]; batch: boxes (xyxy, input pixels) with class labels.
        threshold_rule: ``max`` (the papers' text) | ``minmax`` (wsolevaluation).
    Returns:
        ``box_localisation`` [B] GT-known hit (1/0); ``box_localisation_iou`` [B];
        ``box_localisation_top1_error`` / ``_top5_error`` [B]: 1 unless the hit holds
        and the target is the model's top-1 / among its top-5 (ILSVRC's error: only the
        prediction of the right class can be correct, and its box is this map's box
        when the map explains the label); ``box_localisation_x0/_y0/_x1/_y1`` [B] the
        box (NaN when none). NaN where the class has no box. No box: under ``max`` a map
        with max <= 0 (a constant positive map keeps every pixel), under ``minmax`` a
        constant map. Costs 1 forward per sample.
    """
    batch = need_batch(batch, "box_localisation")
    s, ok = scaled_maps(heatmap, threshold_rule)
    logits = predictions(model, x, chunk)
    tgt = target.to(logits.device).long()
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    top1 = (top[:, 0] == tgt).cpu()
    top5 = (top == tgt[:, None]).any(1).cpu()
    n = s.shape[0]
    out = {k: torch.full((n,), NAN) for k in ("hit", "iou", "x0", "y0", "x1", "y1")}
    for i, t in enumerate(target.tolist()):
        gt = class_boxes(batch, i, t)
        box = component_box(kept(s[i], threshold))
        if box is not None:
            for k, v in zip(("x0", "y0", "x1", "y1"), box):
                out[k][i] = v
        if gt is not None:
            out["iou"][i] = best_iou(box, gt)
            out["hit"][i] = float(out["iou"][i] >= iou_threshold)
    hit = out["hit"]
    known = ~torch.isnan(hit)
    err1 = torch.where(known, 1.0 - (hit.nan_to_num(0) * top1), NAN)
    err5 = torch.where(known, 1.0 - (hit.nan_to_num(0) * top5), NAN)
    res = {"box_localisation": hit, "box_localisation_iou": out["iou"],
           "box_localisation_top1_error": err1, "box_localisation_top5_error": err5}
    res.update({f"box_localisation_{k}": out[k] for k in ("x0", "y0", "x1", "y1")})
    return {k: nan_where(v.to(heatmap.device), ok) for k, v in res.items()}


def curve_max(curve: Tensor | np.ndarray) -> tuple[float, int]:
    """Dataset-level MaxBoxAcc from the per-sample ``max_box_acc_curve`` [N,T]: the
    accuracy at each threshold is the mean over samples (rows with NaN skipped, float64),
    and the score is its maximum. Returns (score, index of the best threshold), or
    (NaN, -1) without rows. ``CURVE_MAX`` (``aggregate.curve_max``) adds a bootstrap CI.

    Example:
        >>> curve_max(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))
        (0.6666666666666666, 0)
    """
    rows = np.asarray(curve, dtype=np.float64)
    rows = rows[~np.isnan(rows).any(1)]
    if rows.shape[0] == 0:
        return NAN, -1
    acc = rows.mean(0)
    best = int(acc.argmax())
    return float(acc[best]), best


def _best_threshold(frame: pd.DataFrame, key: str, n_resamples: int, seed: int,
                    num_classes: int | None) -> dict[str, float]:
    """``max_t mean_n`` of the per-sample curve column of ``key`` [N,T] over the rows
    ``frame``, with a bootstrap CI; NaN statistics when the run has no such column."""
    col = schema.curve_key(key)
    if col not in frame.columns:
        aggregate.log.warning("output %s: no %s column to take the curve max of; left blank",
                              key, col)
        return dict(aggregate.NAN)
    return aggregate.curve_max(np.stack(frame[col].to_numpy()).astype(np.float64), n_resamples, seed)


# max_box_acc's dataset score: the best threshold, chosen once for the whole dataset
CURVE_MAX = Aggregation("curve_max", _best_threshold)


@register(higher_is_better=True, needs={"boxes"}, aggregate=CURVE_MAX,
          curve_axes={"max_box_acc_curve": "threshold (share of the map's range, or of its max)"})
def max_box_acc(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                batch: Batch, num_thresholds: Count = 100, threshold_rule: ThresholdRule = "minmax",
                iou_threshold: Fraction = 0.5) -> dict[str, Tensor]:
    """MaxBoxAcc (Choe et al. 2020): box localisation accuracy at the best of the
    thresholds ``tau_t = t / num_thresholds`` (t = 0..T-1), the best chosen once for the
    whole dataset. A pixel is kept when its min-max normalised value is ``> tau``
    (wsolevaluation, ``threshold_rule="minmax"``) or when it is ``> tau * max``
    (``"max"``), as in ``box_localisation``. A per-sample function cannot take that max,
    so it returns each sample's hit at every threshold as ``max_box_acc_curve`` [B,T];
    the dataset score is ``max_t mean_n curve[n, t]`` (``aggregate=CURVE_MAX``, see
    ``curve_max``). The per-sample ``max_box_acc`` is NaN by construction (it exists only
    at dataset level).

    Args:
        heatmap: [B,H,W]; target: [B]; batch: boxes with class labels. Model unused.
    Returns:
        ``max_box_acc`` [B] NaN; ``max_box_acc_curve`` [B,T] hits (1/0), NaN rows where
        the class has no box or the map is not finite, and ``max_box_acc_curve_x`` [B,T]
        the thresholds. Degenerate maps as in ``box_localisation``.
    """
    batch = need_batch(batch, "max_box_acc")
    s, ok = scaled_maps(heatmap, threshold_rule)
    taus = np.arange(num_thresholds) / num_thresholds
    curve = torch.full((s.shape[0], num_thresholds), NAN)
    for i, t in enumerate(target.tolist()):
        gt = class_boxes(batch, i, t)
        if gt is None:
            continue
        for j, tau in enumerate(taus):
            box = component_box(kept(s[i], tau))
            curve[i, j] = float(best_iou(box, gt) >= iou_threshold)
    dev = heatmap.device
    xs = torch.tensor(taus, dtype=torch.float32, device=dev).expand(s.shape[0], -1)
    return {"max_box_acc": torch.full((s.shape[0],), NAN, device=dev),
            "max_box_acc_curve": nan_where(curve.to(dev), ok), "max_box_acc_curve_x": xs}
