"""Monotonicity (Arya et al., AIX360, 2019): does the target's score rise at every step
as pixels are restored into a baseline least relevant first; and monotonicity
correlation (Nguyen & Martinez, 2020): does a group's relevance rank like the variance
of the score when that group is replaced by random values."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Activation, clean, forward_chunks, nan_where,
                                        sample_ids)
from faithbench.metrics._order import Ties, ranks
from faithbench.metrics._perturb import Substitute, curve_x, curves
from faithbench.metrics._similarity import average_ranks, pearson
from faithbench.metrics.perturbation import RISE_STEP
from faithbench.ops import class_scores, generator
from faithbench.params import Count, Fraction, OddSize, Positive
from faithbench.types import Batch

VALUES_STREAM = 700  # per-sample generator stream of monotonicity_correlation's values


@register(higher_is_better=True, context=("seed", "activation"),
          curve_axes={"monotonicity_curve": "fraction of pixels inserted"})
def monotonicity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                 batch: Batch | None = None, step: Fraction = RISE_STEP,
                 substitute: Substitute = "zero", activation: Activation | None = None,
                 chunk: Count = 128, seed: int | None = None, blur_kernel: OddSize = 11,
                 blur_sigma: Positive = 5.0, ties: Ties = "random") -> dict[str, Tensor]:
    """Monotonicity (Arya et al. 2019, AIX360's ``monotonicity_metric``): start from
    ``substitute`` and restore the image's pixels least relevant first, ``step`` of the
    pixels at a time; 1 if the target's score (softmax, or sigmoid for multi-label) never
    decreases from one restored group to the next, else 0. Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw (signed) map; target: [B].
        step, substitute, chunk, seed, blur_kernel, blur_sigma, ties: as ``insertion``
            (``ceil(step * H * W)`` pixels per group).
    Returns:
        ``monotonicity`` [B] in {0, 1}; ``monotonicity_curve`` [B,T] the score from the
        baseline (first point, not compared, as AIX360) to the full image, with
        ``monotonicity_curve_x``. Costs T = ceil(1/step) + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = monotonicity(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), torch.tensor([0, 1]))
        >>> out["monotonicity"].shape
        torch.Size([2])
    """
    _, ok = clean(heatmap)
    _, curve = curves(model, x, heatmap, target, mode="insertion", order="lerf", step=step,
                      substitute=substitute, activation=activation, chunk=chunk, seed=seed,
                      ids=sample_ids(batch, x.shape[0]), blur_kernel=blur_kernel,
                      blur_sigma=blur_sigma, ties=ties)
    mono = (curve[:, 1:].diff(dim=1) >= 0).all(1)
    return {"monotonicity": nan_where(mono, ok), "monotonicity_curve": curve,
            "monotonicity_curve_x": curve_x(x, step)}


def variance_correlation(model: nn.Module, x: Tensor, relevance: Tensor, group: Tensor,
                         values: Tensor, target: Tensor, activation: str | None, eps: float,
                         chunk: int) -> Tensor:
    """Spearman correlation [B] between each group's summed ``relevance`` [B,H*W] and
    ``mean_j (f(x'_tj) - f(x))^2 / f(x)^2`` (divided by 1 where ``|f(x)| < eps``), where
    ``x'_tj`` has the pixels of group t (``group`` [B,H*W] in 0..T-1) set to
    ``values[:, t, j]`` [B,T,n] in every channel."""
    b, _, h, w = x.shape
    t, n = values.shape[1:]
    tgt = target.to(x.device).long()
    base = class_scores(forward_chunks(model, b, lambda r: x[r.to(x.device)], chunk), tgt,
                        activation, via_log_softmax=True)
    flat_values = values.reshape(-1).to(x.device, x.dtype)

    def make(rows: Tensor) -> Tensor:
        r = rows.to(x.device)
        i, g = r // (t * n), (r // n) % t
        m = (group[i] == g[:, None]).view(-1, 1, h, w)
        return torch.where(m, flat_values[r].view(-1, 1, 1, 1), x[i])

    rows = torch.arange(b * t * n, device=x.device)
    after = class_scores(forward_chunks(model, b * t * n, make, chunk), tgt[rows // (t * n)],
                         activation, via_log_softmax=True).view(b, t, n)
    inv = torch.where(base.abs() >= eps, 1 / base.abs().clamp_min(eps), torch.ones_like(base)) ** 2
    variance = (after - base[:, None, None]).double().square().mean(2) * inv[:, None]
    sums = torch.zeros(b, t, dtype=torch.float64, device=x.device).scatter_add_(1, group, relevance.double())
    return pearson(average_ranks(sums), average_ranks(variance))


@register(higher_is_better=True, context=("seed", "activation"))
def monotonicity_correlation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                             batch: Batch | None = None, step: Fraction = RISE_STEP,
                             n_samples: Count = 10, absolute: bool = True,
                             eps: Positive = 1e-5, activation: Activation | None = None,
                             chunk: Count = 128, seed: int | None = None,
                             ties: Ties = "random") -> dict[str, Tensor]:
    """Monotonicity correlation (Nguyen & Martinez 2020, as Quantus's
    ``MonotonicityCorrelation``): split the pixels, least relevant first, into groups of
    ``ceil(step * H * W)``; replace each group alone by a random value (uniform in the
    image's [min, max], one value per draw for the group's pixels and channels)
    ``n_samples`` times; return the Spearman correlation between the groups' relevance
    and the mean squared change of the target's score relative to ``f(x)^2``. Higher is
    better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        step: share of the pixels per group (default 1/28: 28 groups).
        n_samples: random values per group (Quantus's default 100).
        absolute: rank and sum ``|map|`` (the paper and Quantus's default) or the raw map.
        eps: ``f(x)`` below this in magnitude is not divided by. seed: values and the
            ``random`` tie order (per sample). chunk: images per forward.
    Returns:
        ``monotonicity_correlation`` [B] in [-1, 1] (0 where the group relevances or the
        variances are constant). Costs T * n_samples + 1 forwards per sample, T groups.
    """
    h, ok = clean(heatmap)
    b, n_pix = x.shape[0], x.shape[-2] * x.shape[-1]
    ids = sample_ids(batch, b)
    rel = h.abs() if absolute else h
    size = max(1, math.ceil(step * n_pix - 1e-6))  # as the perturbation schedule
    t = math.ceil(n_pix / size)
    group = ranks(rel, "lerf", ties, seed, ids) // size
    lo, hi = x.flatten(1).min(1).values, x.flatten(1).max(1).values
    u = torch.stack([torch.rand((t, n_samples), generator=generator(seed, i, x.device, VALUES_STREAM),
                                device=x.device) for i in ids])
    values = lo.view(-1, 1, 1) + u * (hi - lo).view(-1, 1, 1)
    corr = variance_correlation(model, x, rel.flatten(1), group, values, target, activation, eps, chunk)
    return {"monotonicity_correlation": nan_where(corr, ok)}
