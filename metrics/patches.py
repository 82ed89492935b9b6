"""Patch perturbation curves: region perturbation (Samek, Binder, Montavon, Lapuschkin &
Müller, TNNLS 2017: AOPC under most-relevant-first removal of patches) and selectivity
(Montavon, Samek & Müller, DSP 2018: the score as patches are removed).

The image is tiled by a grid of ``patch`` x ``patch`` squares, centred as Quantus
centres it (the grid overhangs the image by half the remainder on each side, so edge
patches may be smaller); patches are ranked by their summed relevance and removed
cumulatively, one per step, every perturbed image built per chunk on the device.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import check_choice
from faithbench.metrics import register
from faithbench.metrics._common import (Activation, clean, forward_chunks, nan_where,
                                        per_sample_noise, sample_ids)
from faithbench.metrics._order import Ties, order_of
from faithbench.metrics._perturb import SUBSTITUTES, substitute_image
from faithbench.ops import class_scores
from faithbench.params import Count
from faithbench.types import Batch

PatchSubstitute = Literal["uniform", "zero", "blur", "mean", "noise"]
UNIFORM_STREAM = 800  # per-sample generator stream of the uniform substitute
_AXIS = "fraction of the patches removed"


def patch_ids(h: int, w: int, patch: int, device: torch.device) -> tuple[Tensor, int]:
    """(patch index of every pixel [H*W], number of patches) of the centred grid."""
    def axis(n: int) -> tuple[Tensor, int]:
        pad = (-n) % patch
        return (torch.arange(n, device=device) + pad // 2) // patch, (n + pad) // patch
    rows, nr = axis(h)
    cols, nc = axis(w)
    return (rows[:, None] * nc + cols[None, :]).flatten(), nr * nc


def removal_image(x: Tensor, kind: str, seed: int | None, ids: list[int]) -> Tensor:
    """What removed pixels become [B,C,H,W]: ``uniform`` (Samek et al.: per pixel and
    channel uniform in the image's [min, max], seeded per sample) or a ``deletion``
    substitute (``zero``, ``blur``, ``mean``, ``noise``; blur with RISE's kernel)."""
    check_choice("substitute", kind, ("uniform", *SUBSTITUTES))
    if kind != "uniform":
        return substitute_image(x, kind, seed, ids, 11, 5.0)
    lo = x.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
    u = per_sample_noise(tuple(x.shape[1:]), seed, ids, x.device, kind="uniform", stream=UNIFORM_STREAM)
    return lo + (u.to(x.dtype) + 1) / 2 * (hi - lo)


def patch_curve(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor, *, patch: int,
                regions: int | None, substitute: str, activation: str | None, chunk: int,
                seed: int | None, ids: list[int], ties: Ties) -> Tensor:
    """Target score with 0, 1, ..., L patches removed most relevant first, [B,L+1]
    (L = ``regions`` capped at the number of patches; None: all of them)."""
    b, _, h, w = x.shape
    pid, n_patches = patch_ids(h, w, patch, x.device)
    sums = torch.zeros(b, n_patches, device=x.device).scatter_add_(1, pid.expand(b, -1), heatmap.flatten(1))
    order = order_of(sums.view(b, 1, n_patches), "morf", ties, seed, ids)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_patches, device=x.device).expand(b, -1))
    pixel_rank = rank.gather(1, pid.expand(b, -1)).view(b, 1, h, w)  # removal step of each pixel
    steps = min(regions, n_patches) if regions is not None else n_patches
    t = steps + 1
    sub = removal_image(x, substitute, seed, ids)

    def make(rows: Tensor) -> Tensor:
        r = rows.to(x.device)
        i, k = r // t, r % t
        return torch.where(pixel_rank[i] < k.view(-1, 1, 1, 1), sub[i], x[i])

    rows = torch.arange(b * t, device=x.device)
    logits = forward_chunks(model, b * t, make, chunk)
    return class_scores(logits, target.to(x.device).long()[rows // t], activation,
                        via_log_softmax=True).view(b, t)


@register(higher_is_better=True, context=("seed", "activation"),
          curve_axes={"region_perturbation_curve": _AXIS})
def region_perturbation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                        batch: Batch | None = None, patch: Count = 9, regions: Count = 100,
                        substitute: PatchSubstitute = "uniform",
                        activation: Activation | None = None, chunk: Count = 128,
                        seed: int | None = None, ties: Ties = "random") -> dict[str, Tensor]:
    """Region perturbation (Samek et al. 2017, Eq. 12): remove the ``regions`` most
    relevant ``patch`` x ``patch`` patches one after another (most relevant first,
    replaced by ``substitute``) and return the AOPC, ``mean_{k=0..L} f(x) - f(x^(k))``
    of the target's score (softmax, or sigmoid for multi-label). Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        patch: patch side in pixels (the paper's 9). regions: steps L (the paper's 100),
            capped at the number of patches.
        substitute: ``uniform`` (the paper: per pixel uniform in the image's value range)
            or a ``deletion`` substitute. ties: order of patches of equal relevance.
        seed: uniform values and the ``random`` tie order (per sample). chunk: images
            per forward.
    Returns:
        ``region_perturbation`` [B] the AOPC; ``region_perturbation_curve`` [B,L+1] the
        drop ``f(x) - f(x^(k))`` after k patches, with ``_x`` (k / L).
        Costs L + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = region_perturbation(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4),
        ...                           torch.tensor([0, 1]), patch=2)
        >>> out["region_perturbation_curve"].shape
        torch.Size([2, 5])
    """
    h, ok = clean(heatmap)
    scores = patch_curve(model, x, h, target, patch=patch, regions=regions, substitute=substitute,
                         activation=activation, chunk=chunk, seed=seed,
                         ids=sample_ids(batch, x.shape[0]), ties=ties)
    drops = scores[:, :1] - scores
    xs = torch.linspace(0, 1, drops.shape[1], device=x.device).expand_as(drops)
    return {"region_perturbation": nan_where(drops.mean(1), ok),
            "region_perturbation_curve": nan_where(drops, ok), "region_perturbation_curve_x": xs}


@register(higher_is_better=False, context=("seed", "activation"),
          curve_axes={"selectivity_curve": _AXIS})
def selectivity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                batch: Batch | None = None, patch: Count = 8,
                substitute: PatchSubstitute = "zero", activation: Activation | None = None,
                chunk: Count = 128, seed: int | None = None,
                ties: Ties = "random") -> dict[str, Tensor]:
    """Selectivity (Montavon et al. 2018, Sec. 4.1): remove every ``patch`` x ``patch``
    patch one after another, most relevant first, and integrate the target's score
    (softmax, or sigmoid) over the fraction of patches removed (trapezoid on [0, 1]).
    A selective map makes the score fall fast. Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        patch: patch side (Quantus's 8). substitute: ``zero`` (default: the dataset mean
            colour), ``uniform`` or another ``deletion`` substitute. ties, seed, chunk:
            as ``region_perturbation``.
    Returns:
        ``selectivity`` [B] the area in [0, 1]; ``selectivity_curve`` [B,P+1] the score
        after 0..P patches, with ``_x``. Costs P + 1 forwards per sample (P patches).
    """
    h, ok = clean(heatmap)
    scores = patch_curve(model, x, h, target, patch=patch, regions=None, substitute=substitute,
                         activation=activation, chunk=chunk, seed=seed,
                         ids=sample_ids(batch, x.shape[0]), ties=ties)
    xs = torch.linspace(0, 1, scores.shape[1], device=x.device).expand_as(scores)
    return {"selectivity": nan_where(torch.trapezoid(scores, xs, dim=1), ok),
            "selectivity_curve": nan_where(scores, ok), "selectivity_curve_x": xs}
