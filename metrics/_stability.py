"""Shared loop of the stability metrics: explain transformed inputs and compare each map
with the correspondingly transformed original map, where the prediction is unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench import schema
from faithbench.metrics._common import (Explain, clean, finite_rows, nan_where,
                                        per_sample_noise, predictions)
from faithbench.metrics._similarity import compare

# (x [B,C,H,W], clean heatmap [B,H,W]) -> (transformed x, reference map, valid [H,W] or None)
Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor | None]]


def stability(name: str, model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
              explain: Explain, transforms: Sequence[Transform], topk: float,
              absolute: bool, chunk: int, levels: Sequence[float]) -> dict[str, Tensor]:
    """Per transform j: ``explain(x_j, target)`` vs the reference map, compared by
    Spearman, top-k IoU and (when the whole map is valid) SSIM; NaN where the model's
    top-1 class on x_j differs from that on x. The score ``name`` is the mean Spearman
    over the transforms with an unchanged prediction (NaN if none).

    Returns:
        ``name`` [B]; ``{name}_topk_iou`` [B]; ``{name}_ssim`` [B] (full-map transforms
        only); ``{name}_unchanged`` [B] share of transforms keeping the prediction;
        ``{name}_curve``, ``{name}_topk_iou_curve`` (``{name}_ssim_curve``) [B,J], each
        with its ``_x`` [B,J] = ``levels`` (noise level, angle, ...) for figures.
    """
    h, ok = clean(heatmap)
    pred = predictions(model, x, chunk).argmax(1)
    cols: dict[str, list[Tensor]] = {}
    same = []
    nan = torch.full((), float("nan"), device=x.device)
    for make in transforms:
        xj, ref, valid = make(x, h)
        keep = predictions(model, xj, chunk).argmax(1) == pred
        hj = explain(xj, target).detach().float()
        keep = keep & finite_rows(hj)
        hj = torch.where(keep[:, None, None], hj, torch.zeros((), device=hj.device))
        for k, v in compare(hj, ref, topk, absolute, valid).items():
            cols.setdefault(k, []).append(torch.where(keep, v, nan))
        same.append(keep.float())
    curves = {k: torch.stack(v, 1) for k, v in cols.items()}
    out = {name: curves["spearman"].nanmean(1), f"{name}_curve": curves["spearman"],
           f"{name}_topk_iou": curves["topk_iou"].nanmean(1),
           f"{name}_topk_iou_curve": curves["topk_iou"],
           f"{name}_unchanged": torch.stack(same, 1).mean(1)}
    if "ssim" in curves:
        out[f"{name}_ssim"] = curves["ssim"].nanmean(1)
        out[f"{name}_ssim_curve"] = curves["ssim"]
    out = {k: nan_where(v, ok) for k, v in out.items()}
    xs = torch.tensor([float(v) for v in levels], device=x.device).expand(x.shape[0], -1)
    out.update({schema.x_key(k): xs for k in list(out) if schema.is_curve(k)})
    return out


def ball_noise(x: Tensor, seed: int | None, ids: list[int], radius: float, stream: int) -> Tensor:
    """Noise [B,C,H,W] uniform in the L-inf ball of ``radius`` (model-input units), row i
    from ``generator(seed, ids[i], stream)``: the draws of the sensitivity metrics."""
    d = per_sample_noise(tuple(x.shape[1:]), seed, ids, x.device, kind="uniform", stream=stream)
    return (d * radius).to(x.dtype)


def rotate(z: Tensor, degrees: float) -> Tensor:
    """Rotate [B,C,H,W] by ``degrees`` (counter-clockwise as displayed, rows down) about
    the image centre, bilinear, zeros outside (the mean colour for normalised input)."""
    b, _, hh, ww = z.shape
    a = torch.deg2rad(torch.tensor(float(degrees), dtype=torch.float64))
    c, s = float(torch.cos(a)), float(torch.sin(a))
    # affine_grid maps output to input coordinates in [-1,1] per axis; the aspect ratio
    # terms keep the rotation rigid in pixels for non-square images.
    theta = torch.tensor([[c, -s * hh / ww, 0.0], [s * ww / hh, c, 0.0]], dtype=z.dtype, device=z.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), list(z.shape), align_corners=False)
    return F.grid_sample(z, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift(z: Tensor, dy: int, dx: int) -> Tensor:
    """Translate [...,H,W] by (dy, dx) pixels (down, right), zeros where nothing lands."""
    hh, ww = z.shape[-2:]
    out = torch.zeros_like(z)
    if abs(dy) >= hh or abs(dx) >= ww:
        return out
    out[..., max(dy, 0):hh + min(dy, 0), max(dx, 0):ww + min(dx, 0)] = \
        z[..., max(-dy, 0):hh + min(-dy, 0), max(-dx, 0):ww + min(-dx, 0)]
    return out
