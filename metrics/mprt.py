"""The model parameter randomisation test revisited (Hedström, Weber, Lapuschkin & Höhne,
"Sanity Checks Revisited", 2023/2024): smooth MPRT denoises every map by averaging it
over noisy copies of the input before comparing, and efficient MPRT replaces the
similarity by the rise in the map's complexity (discrete entropy) once the whole model
is randomised. Layers are re-initialised as ``model_randomisation`` does
(``faithbench.metrics.sanity``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import check_choice
from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, finite_rows, nan_where, need_explain,
                                        per_sample_noise, sample_ids)
from faithbench.metrics._similarity import spearman
from faithbench.metrics.sanity import cascade, layer_seed, reinitialise
from faithbench.params import Count, NonNegative
from faithbench.types import Batch

LayerOrder = Literal["bottom_up", "top_down"]
SMOOTH_STREAM = 1400  # per-sample generator streams of smooth_mprt's noise (1400 + draw)
LAYERS_AXIS = "layers re-initialised"


def ordered_groups(model: nn.Module, layers: Sequence[str] | None, order: str) -> list[list[str]]:
    """``sanity.cascade``'s groups (top first) in the order they are re-initialised."""
    check_choice("order", order, ["bottom_up", "top_down"])
    groups = cascade(model, layers)
    return groups[::-1] if order == "bottom_up" else groups


def smoothed(explain: Explain, x: Tensor, target: Tensor, model: nn.Module, n_samples: int,
             noise: float, seed: int | None, ids: list[int], first: Tensor | None = None) -> Tensor:
    """Mean map over ``n_samples`` explanations [B,H,W]: of ``x`` itself (``first`` when
    given) and of ``n_samples - 1`` copies ``x + eps``, eps ~ N(0, sigma^2) with
    ``sigma = noise * (max(x_i) - min(x_i))`` per sample (Quantus's sMPRT: one noise-free
    draw, so ``n_samples=1`` is the plain MPRT), noise from ``generator(seed, ids[i],
    SMOOTH_STREAM + j)``."""
    dims = tuple(range(1, x.dim()))
    sigma = noise * (x.amax(dims, keepdim=True) - x.amin(dims, keepdim=True))
    total = (explain(x, target, model=model) if first is None else first).detach().float()
    for j in range(1, n_samples):
        eps = per_sample_noise(tuple(x.shape[1:]), seed, ids, x.device, stream=SMOOTH_STREAM + j)
        total = total + explain(x + eps * sigma, target, model=model).detach().float()
    return total / n_samples


@register(higher_is_better=False, context=("explain", "seed"),
          outputs={"smooth_mprt_final": False},
          curve_axes={"smooth_mprt_curve": LAYERS_AXIS})
def smooth_mprt(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                batch: Batch | None = None, explain: Explain | None = None,
                layers: Sequence[str] | None = None, order: LayerOrder = "bottom_up",
                n_samples: Count = 50, noise: NonNegative = 0.1, absolute: bool = True,
                seed: int | None = None) -> dict[str, Tensor]:
    """Smooth MPRT (Hedström et al., sMPRT): cascading layer randomisation as
    ``model_randomisation``, but every map, the original's included, is the mean of
    ``n_samples`` explanations of noisy copies of the input; each randomised map is
    compared with the smoothed original by Spearman rank correlation.

    Args:
        explain: ``explain(x, target, model=m) -> [B,H,W]`` on a given model.
        layers: module names as in ``model_randomisation``; None: every module with
            parameters of its own.
        order: ``bottom_up`` (input side first, Quantus's sMPRT) | ``top_down``
            (Adebayo et al.'s cascade).
        n_samples: explanations averaged per map, the first on the clean input (the
            given ``heatmap`` for the original model). noise: the noise's std as a share
            of each input's value range (Quantus: 0.1). absolute: rank |maps|
            (Quantus's default). seed: null for the run seed; layer l is
            re-initialised under ``layer_seed(seed, l)``.
    Returns:
        ``smooth_mprt`` [B] mean Spearman over the L steps; ``smooth_mprt_final`` [B]
        with every layer randomised; ``smooth_mprt_curve`` [B,L] and ``_x`` (1..L).
        NaN where the heatmap is not finite; a step whose map is not finite is NaN in
        the curve and left out of the mean. Costs (L + 1) * n_samples - 1 explanations
        per sample.
    """
    explain = need_explain(explain, "smooth_mprt")
    h, ok = clean(heatmap)
    ids = sample_ids(batch, h.shape[0])
    m = copy.deepcopy(model)
    groups = ordered_groups(m, layers, order)
    ref = smoothed(explain, x, target, m, n_samples, noise, seed, ids, first=h)
    rho = []
    for step, names in enumerate(groups):
        reinitialise(m, names, layer_seed(seed, step))
        hr = smoothed(explain, x, target, m, n_samples, noise, seed, ids)
        good = finite_rows(hr)
        hr = torch.where(good[:, None, None], hr, torch.zeros((), device=hr.device))
        a, b = (hr.abs(), ref.abs()) if absolute else (hr, ref)
        r = spearman(a.flatten(1), b.flatten(1))
        rho.append(torch.where(good, r, torch.full((), math.nan, device=r.device)))
    curve = torch.stack(rho, 1)
    steps = torch.arange(1, len(groups) + 1, dtype=torch.float32, device=h.device)
    return {"smooth_mprt": nan_where(curve.nanmean(1), ok),
            "smooth_mprt_final": nan_where(curve[:, -1], ok),
            "smooth_mprt_curve": nan_where(curve, ok),
            "smooth_mprt_curve_x": steps.expand(h.shape[0], -1)}


def discrete_entropy(maps: Tensor, n_bins: int) -> Tensor:
    """Shannon entropy (nats) of the histogram of each map's values [B,H,W] -> [B]
    float64: ``n_bins`` equal bins spanning the map's own [min, max], the last closed
    (``scipy.stats.entropy(np.histogram(a, bins=n_bins)[0])``, Quantus's
    ``discrete_entropy``). A map of one value has entropy 0."""
    v = maps.flatten(1).double()
    lo, hi = v.min(1, keepdim=True).values, v.max(1, keepdim=True).values
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    idx = ((v - lo) * (n_bins / span)).long().clamp(0, n_bins - 1)
    counts = torch.zeros(v.shape[0], n_bins, dtype=torch.float64, device=v.device)
    counts.scatter_add_(1, idx, torch.ones_like(v))
    p = counts / v.shape[1]
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(1)


@register(higher_is_better=True, context=("explain", "seed"),
          outputs={"efficient_mprt_entropy": False, "efficient_mprt_random_entropy": True})
def efficient_mprt(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                   batch: Batch | None = None, explain: Explain | None = None,
                   layers: Sequence[str] | None = None, n_bins: Count = 100,
                   seed: int | None = None) -> dict[str, Tensor]:
    """Efficient MPRT (Hedström et al., eMPRT): the relative rise in the map's
    complexity once every layer is re-initialised, ``(H(e_random) - H(e)) / H(e)``
    with H the discrete entropy of the map's values (``discrete_entropy``). A map that
    depends on the model turns noisier, so higher is better. One explanation per
    sample: the fully randomised model only.

    Args:
        explain: ``explain(x, target, model=m) -> [B,H,W]`` on a given model.
        layers: module names re-initialised (default: every module with parameters of
            its own), each under ``layer_seed(seed, step)`` bottom-up.
        n_bins: histogram bins (Quantus's default 100 when no binning rule is set).
        seed: null for the run seed.
    Returns:
        ``efficient_mprt`` [B] the relative rise; NaN where the map has one value
        (entropy 0: no rise relative to it exists) or is not finite;
        ``efficient_mprt_entropy`` [B] H(e); ``efficient_mprt_random_entropy`` [B]
        H(e_random). Costs 1 explanation per sample.
    """
    explain = need_explain(explain, "efficient_mprt")
    h, ok = clean(heatmap)
    m = copy.deepcopy(model)
    for step, names in enumerate(ordered_groups(m, layers, "bottom_up")):
        reinitialise(m, names, layer_seed(seed, step))
    hr = explain(x, target, model=m).detach().float()
    good = finite_rows(hr) & ok
    hr = torch.where(good[:, None, None], hr, torch.zeros((), device=hr.device))
    h0, h1 = discrete_entropy(h, n_bins), discrete_entropy(hr, n_bins)
    rise = (h1 - h0) / torch.where(h0 > 0, h0, torch.ones_like(h0))
    return {"efficient_mprt": nan_where(rise, good & (h0 > 0)),
            "efficient_mprt_entropy": nan_where(h0, ok),
            "efficient_mprt_random_entropy": nan_where(h1, good)}
