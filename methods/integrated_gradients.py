"""Integrated gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep
Networks", ICML 2017)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._baselines import check_steps, make_baseline
from faithbench.errors import check_choice
from faithbench.methods._common import Reduce, check_inputs, chunk_pairs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient
from faithbench.params import Count, Positive

Rule = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(n: int, rule: str) -> tuple[Tensor, Tensor]:
    """Points alpha [n] in [0, 1] and weights [n] summing to 1 for int_0^1 f(alpha)."""
    check_choice("integration rule", rule, RULES)
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)
    if rule == "riemann_trapezoid":
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[[0, -1]] /= 2  # spacing 1/(n-1): the weights sum to 1 (Captum's sum to 1 - 1/n)
        return torch.linspace(0, 1, n, dtype=torch.float64), w
    start = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (torch.arange(n, dtype=torch.float64) + start) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)


@channel_map("integrated_gradients", reduce="sum")
def integrated_gradients_channels(
    model: nn.Module, x: Tensor, target: Tensor, baseline: str | float | Tensor = "zero",
    n_steps: int = 50, rule: Rule = "gausslegendre", internal_batch_size: int = 64,
    blur_sigma: float = 5.0, seed: int | None = None,
) -> Tensor:
    """(x - x') * int_0^1 dF(x' + a (x - x'))/dx da per channel [B,3,H,W] (Eq. 1)."""
    target = check_inputs(x, target)
    alphas, weights = quadrature(check_steps(n_steps, 2 if rule == "riemann_trapezoid" else 1), rule)
    alphas, weights = alphas.to(x.device, x.dtype), weights.to(x.device, torch.float32)
    base = make_baseline(x, baseline, blur_sigma, seed)
    delta = x - base
    total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for b, k in chunk_pairs(x.shape[0], len(alphas), internal_batch_size, x.device):
        path = base[b] + alphas[k, None, None, None] * delta[b]
        g = input_gradient(model, path, target[b])
        total.index_add_(0, b, g * weights[k, None, None, None])
    return delta.float() * total


@register(optional_context=("seed",), cost="backward")
def integrated_gradients(
    model: nn.Module, x: Tensor, target: Tensor,
    baseline: Literal["zero", "blur", "uniform"] | float | Tensor = "zero", n_steps: Count = 50,
    rule: Rule = "gausslegendre", internal_batch_size: Count = 64,
    blur_sigma: Positive = 5.0, seed: int | None = None, reduce: Reduce = "sum",
) -> Tensor:
    """Path integral of the target logit's gradient from a baseline x' to x.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        baseline: "zero" | "blur" | "uniform" | number | tensor (see ``make_baseline``).
        n_steps: points on the path.
        rule: quadrature: "gausslegendre" (Captum's default) or a Riemann sum.
        internal_batch_size: path images per forward/backward.
        blur_sigma: std in pixels of the "blur" baseline.
        seed: draws the "uniform" baseline.
        reduce: channel reduction; "sum" keeps completeness: per sample, the map sums
            to about logit(x) - logit(x').

    Returns:
        [B,H,W] float32.
    """
    a = integrated_gradients_channels(model, x, target, baseline, n_steps, rule,
                                      internal_batch_size, blur_sigma, seed)
    return reduce_channels(a, reduce)
