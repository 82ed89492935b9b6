"""Known-truth metrics: does the map sit on the cue the model is verified to use?

They read the ground-truth layout of the known-truth datasets (``cues``): the used cue
is the region of the target class (masks whose label is the target), every mask with a
negative label is a cue the model was verified NOT to use (``-1 - its value``). On other
datasets with masks the used cue is the class region and the ``_other`` outputs are NaN.
The model contrast score, which needs the maps of two models on the same images, is
computed at report time from the per-sample ``cue_mass`` and ``cue_mass_other`` of both
runs (``faithbench.report.truth``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import clean, nan_where
from faithbench.params import NonNegative
from faithbench.regions import class_region
from faithbench.types import Batch

NAN = float("nan")


def cue_regions(batch: Batch, i: int, t: int, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """(used cue, other cues) of sample ``i`` with target ``t`` as bool masks [H,W] at
    input resolution; None where there is none (or it is empty: no ground truth)."""
    if batch.masks is None or batch.mask_labels is None:
        return None, None
    hw = tuple(batch.masks[i].shape[-2:])
    used, other = (class_region(batch, i, c, hw, ground_truth="masks") for c in (t, -1))
    return (None if used is None else used.to(device)), (None if other is None else other.to(device))


@register(higher_is_better=True, needs={"masks"}, outputs={"cue_mass_other": False})
def cue_mass(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
             batch: Batch) -> dict[str, Tensor]:
    """Share of the map's positive mass on the used cue, ``sum(e on cue) / sum(e)`` with
    ``e = relu(map) - min(relu(map))`` (the energy pointing game of Wang et al.,
    Score-CAM, CVPRW 2020, on the verified cue); also on the unused cue. Less the minimum,
    as BAM (Yang & Kim 2019) normalises maps: a constant offset (RISE's maps carry the
    mean score everywhere) says nothing about where, and would spread mass by area; for
    maps that reach 0 (most) ``e = relu(map)``. A map with no mass left (constant,
    all-negative) counts as uniform and scores the regions' area fractions.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: cue masks at input resolution. The
            model and ``x`` are not used.
    Returns:
        ``cue_mass`` [B] in [0,1] (NaN: no used-cue mask for the target),
        ``cue_mass_other`` [B] (lower is better; NaN: no unused cue), ``cue_mass_chance``
        [B]: the used cue's area fraction, what a uniform or random map scores.
    """
    h, ok = clean(heatmap)
    e = h.clamp(min=0).flatten(1)
    e = e - e.min(1, keepdim=True).values
    n = h.shape[0]
    out = {k: torch.full((n,), NAN, device=h.device) for k in ("used", "other", "chance")}
    for i, t in enumerate(target.tolist()):
        used, other = cue_regions(batch, i, t, h.device)
        total = e[i].sum()
        for key, region in (("used", used), ("other", other)):
            if region is not None:
                g = region.flatten()
                out[key][i] = e[i][g].sum() / total if total > 0 else g.float().mean()
        if used is not None:
            out["chance"][i] = used.float().mean()
    return {"cue_mass": nan_where(out["used"], ok), "cue_mass_other": nan_where(out["other"], ok),
            "cue_mass_chance": nan_where(out["chance"], ok)}


def near(region: Tensor, tolerance: float) -> Tensor:
    """Pixels within Euclidean distance ``tolerance`` of ``region`` [H,W] (bool)."""
    r = int(tolerance)
    if r < 1:
        return region
    d = torch.arange(-r, r + 1, device=region.device, dtype=torch.float32)
    disc = (d[:, None] ** 2 + d[None, :] ** 2 <= tolerance**2).float()
    hit = F.conv2d(region[None, None].float(), disc[None, None], padding=r)[0, 0]
    return hit > 0.5


@register(higher_is_better=True, needs={"masks"}, outputs={"cue_pointing_game_other": False})
def cue_pointing_game(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                      batch: Batch, tolerance: NonNegative = 1.5) -> dict[str, Tensor]:
    """Pointing game on the used cue (after Zhang et al., Excitation Backprop, ECCV
    2016): the point is the map's argmax at input resolution (the first in raster order
    on ties); a hit when a used-cue pixel lies within ``tolerance`` input pixels
    (``du^2 + dv^2 <= tol^2``; 0: on the cue). TorchRay's 15-pixel disc would cover 17%
    of a 64-pixel scene, so the tolerance is in input pixels and small (1.5: the 8
    neighbours). A constant map points at the top-left pixel.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: cue masks at input resolution.
        tolerance: in input pixels, >= 0.
    Returns:
        ``cue_pointing_game`` [B] 1 hit / 0 miss / NaN (no used-cue mask);
        ``cue_pointing_game_other`` [B]: the point hits the unused cue (lower is better);
        ``cue_pointing_game_chance`` [B]: the share of pixels that would hit, what a
        uniformly random point scores; ``cue_pointing_game_y``/``_x`` [B]: the point in
        original pixels, ``(input + offset) * scale`` (the input's own for ``cues``).
    """
    h, ok = clean(heatmap)
    n, w = h.shape[0], h.shape[-1]
    idx = h.flatten(1).argmax(1)  # torch returns the first maximal index
    point = torch.stack([idx // w, idx % w], 1)
    out = {k: torch.full((n,), NAN, device=h.device) for k in ("used", "other", "chance")}
    for i, t in enumerate(target.tolist()):
        used, other = cue_regions(batch, i, t, h.device)
        y, xx = point[i].tolist()
        for key, region in (("used", used), ("other", other)):
            if region is not None:
                zone = near(region, tolerance)
                out[key][i] = float(zone[y, xx])
                if key == "used":
                    out["chance"][i] = zone.float().mean()
    scale = batch.scale.to(h.device) if batch.scale.shape[0] == n else torch.ones(n, 2, device=h.device)
    offset = batch.offset.to(h.device) if batch.offset.shape[0] == n else torch.zeros(n, 2, device=h.device)
    orig = (point.float() + offset) * scale
    return {"cue_pointing_game": nan_where(out["used"], ok),
            "cue_pointing_game_other": nan_where(out["other"], ok),
            "cue_pointing_game_chance": nan_where(out["chance"], ok),
            "cue_pointing_game_y": nan_where(orig[:, 0], ok),
            "cue_pointing_game_x": nan_where(orig[:, 1], ok)}
