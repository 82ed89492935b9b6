"""Pointing games: the TorchRay protocol (Zhang et al., Excitation Backprop, ECCV 2016 /
IJCV 2018) and the energy-based variant (Wang et al., Score-CAM, CVPRW 2020)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.aggregate import CLASS_MEAN
from faithbench.metrics import register
from faithbench.metrics._common import clean, nan_where, need_batch, resize
from faithbench.ops import gaussian_blur
from faithbench.params import Count, Positive, UnitInterval, joint_rule
from faithbench.regions import MaskResolution, class_region, frame
from faithbench.types import Batch

GroundTruthChoice = Literal["auto", "masks", "boxes"]
ToleranceUnit = Literal["px", "fraction"]
ClassMean = Literal["present", "label_space"]
NAN = float("nan")


def gaussian_smooth(m: Tensor, sigma: float) -> Tensor:
    """TorchRay's ``imsmooth(m, sigma, padding_mode="replicate")``: a separable Gaussian
    with taps i = -W..W, W = ceil(4 sigma), weights exp(-i^2 / (2 sigma^2)) summing to 1,
    borders replicated. [h,w] -> [h,w] float32; ``sigma <= 0`` returns ``m``."""
    if sigma <= 0:
        return m
    return gaussian_blur(m[None, None].float(), sigma, truncate=4.0, padding="replicate")[0, 0]


@register(higher_is_better=True, needs={"boxes"}, aggregate=CLASS_MEAN, context=("num_classes",),
          outputs={"pointing_game_difficult": True})
@joint_rule(lambda p: p["tolerance_unit"] != "fraction" or p["tolerance"] <= 1,
            "tolerance={tolerance!r} is out of range for tolerance_unit='fraction'; valid: (0, 1], "
            "a share of the image's longer side")
def pointing_game(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                  batch: Batch, tolerance: Positive = 15.0,
                  ground_truth: GroundTruthChoice = "auto", smooth: UnitInterval = 0.0,
                  tolerance_unit: ToleranceUnit = "px", class_mean: ClassMean = "present",
                  num_classes: Count | None = None,
                  mask_resolution: MaskResolution = "original") -> dict[str, Tensor]:
    """Pointing game (TorchRay protocol): the point is the argmax (first in raster order
    on ties) of the map resized bilinearly to the original image size; a hit if any
    ground-truth pixel of the target class lies strictly within ``tolerance`` original
    pixels (``du^2 + dv^2 < tol^2``). Ground truth: the union of the class's masks (COCO)
    if the dataset has masks, else of its boxes (VOC), skipping classes whose boxes are
    all "difficult". Averaged per class, then over classes (``aggregate=CLASS_MEAN``).

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: boxes/masks in input pixels and
            ``scale``/``offset`` back to original pixels. The model is not used.
        tolerance: > 0, in original pixels (``tolerance_unit="px"``; 0.5: only the
            point's own pixel counts) or as a share of the longer side of each input's
            footprint in original pixels, the original image when uncropped
            (``"fraction"``; at most 1).
        tolerance_unit: ``px`` (TorchRay: 15 px, about 3% of a 500 x 375 VOC image) |
            ``fraction`` (the same share on images of any size: 0.03 is 1.9 px on the
            64 x 64 shapes scenes, where 15 px is a quarter of the image).
        class_mean: how the dataset score averages the per-class accuracies (read by
            ``faithbench.aggregate``, not per sample): ``present`` (the classes with a
            scored sample) | ``label_space`` (all ``num_classes`` classes, a class never
            scored counting 0: TorchRay's ``hits / (hits + misses).clamp(min=1)``).
            Equal on full VOC07 / COCO14; on a subset missing a class they differ.
        num_classes: the label-space size for ``label_space``; None: filled by the
            runner from the model's classes.
        mask_resolution: ``original`` (TorchRay): masks at the original image size where
            the dataset keeps them (``batch.orig_masks``, COCO), pixel for pixel; else,
            and with ``input``, the input-resolution masks upsampled nearest-neighbour
            (a mask 1-7 px wide can vanish at 224 px and its pair drops out as NaN).
        ground_truth: ``auto`` | ``masks`` | ``boxes`` (an explicit choice the batch
            lacks is an error).
        smooth: TorchRay's post-processing of its gradient, deconvnet and guided-backprop
            maps: the map at original size is Gaussian-smoothed with sigma =
            ``smooth * max(h, w)`` (TorchRay uses 0.02; replicate borders) before its
            argmax is taken. 0 (default) leaves it as is.
    Returns:
        ``pointing_game`` [B] 1 hit / 0 miss / NaN (no ground truth for the class);
        ``pointing_game_difficult`` [B]: the same where the target is in
        ``batch.hard_classes[i]``, NaN elsewhere; ``pointing_game_y``/``_x`` [B]: the
        point in original pixels. No forward passes.
    """
    batch = need_batch(batch, "pointing_game")
    h, ok = clean(heatmap)
    n, hw = h.shape[0], tuple(h.shape[-2:])
    hit, py, px = (torch.full((n,), NAN) for _ in range(3))
    for i, t in enumerate(target.tolist()):
        scale, size = frame(batch, i, hw)
        tol = tolerance * max(size) if tolerance_unit == "fraction" else tolerance
        r = math.ceil(tol)
        sal = gaussian_smooth(resize(h[i], size), smooth * max(size))
        idx = int(sal.flatten().argmax())  # torch returns the first maximal index
        v, u = divmod(idx, size[1])
        off = batch.offset[i].tolist() if batch.offset.shape[0] > i else [0.0, 0.0]
        py[i], px[i] = v + off[0] * scale[0], u + off[1] * scale[1]
        gt = class_region(batch, i, t, size, scale, ground_truth, skip_difficult=True,
                          mask_resolution=mask_resolution)
        if gt is None:
            continue
        v0, u0 = max(0, v - r), max(0, u - r)
        win = gt[v0:v + r + 1, u0:u + r + 1]
        dv = torch.arange(v0, v0 + win.shape[0])[:, None] - v
        du = torch.arange(u0, u0 + win.shape[1])[None, :] - u
        hit[i] = float(bool((win & (dv**2 + du**2 < tol**2)).any()))
    hard = torch.full((n,), NAN)
    if batch.hard_classes is not None:
        for i, t in enumerate(target.tolist()):
            if bool((batch.hard_classes[i].cpu() == t).any()):
                hard[i] = hit[i]
    dev = heatmap.device
    return {"pointing_game": nan_where(hit.to(dev), ok),
            "pointing_game_difficult": nan_where(hard.to(dev), ok),
            "pointing_game_y": nan_where(py.to(dev), ok), "pointing_game_x": nan_where(px.to(dev), ok)}


@register(higher_is_better=True, needs={"boxes"})
def energy_pointing_game(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                         batch: Batch, ground_truth: GroundTruthChoice = "auto") -> dict[str, Tensor]:
    """Energy-based pointing game (Score-CAM): the share of the map's positive energy
    ``sum(relu(map) inside GT) / sum(relu(map))`` inside the target class's ground truth
    (union of masks if the dataset has masks, else of boxes), at input resolution.
    A map with no positive energy (all-zero, all-negative) counts as uniform and scores
    the ground truth's area fraction, the chance level.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: boxes/masks in input pixels.
    Returns:
        ``energy_pointing_game`` [B] in [0,1], NaN where the class has no ground truth.
        No forward passes.
    """
    batch = need_batch(batch, "energy_pointing_game")
    h, ok = clean(heatmap)
    e = h.clamp(min=0).flatten(1)
    hw = tuple(h.shape[-2:])
    score = torch.full((h.shape[0],), NAN, device=h.device)
    for i, t in enumerate(target.tolist()):
        gt = class_region(batch, i, t, hw, (1.0, 1.0), ground_truth)
        if gt is None:
            continue
        g = gt.flatten().to(h.device)
        total = e[i].sum()
        score[i] = (e[i][g].sum() / total) if total > 0 else g.float().mean()
    return {"energy_pointing_game": nan_where(score, ok)}
