"""The perturbation-curve engine behind ``deletion``, ``insertion`` and ``abpc``.

Every perturbed image of a batch is a ``torch.where`` between a start and a finish image
under a per-sample cumulative mask ``rank < count[step]``, where ``rank`` comes from one
argsort of the map (equal values ordered by the ``ties`` rule, see ``_order``); images
are built lazily per chunk on ``x.device`` and scored ``chunk`` at a time, so there is
no per-sample or per-step Python loop over forwards.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import check_choice
from faithbench.metrics._common import (Activation, clean, forward_chunks,
                                        nan_where, per_sample_noise)
from faithbench.metrics._order import Ties, ranks
from faithbench.ops import class_scores, gaussian_blur
from faithbench.ops import gaussian_window as gaussian_kernel  # RISE's kernel, by its old name
from faithbench.params import Fraction, check_params

Substitute = Literal["zero", "blur", "mean", "noise"]
SUBSTITUTES = ("zero", "blur", "mean", "noise")


def schedule(n_pixels: int, step: Fraction) -> Tensor:
    """Pixels perturbed after each step: ``[0, s, 2s, ..., N]`` clipped at N, with
    ``s = ceil(step * N)`` (RISE: 224*8 pixels of 224*224 = 1/28, so 28 steps and 29
    points at 224x224 with the default ``step = 1/28``). Returns [T] int64."""
    check_params(schedule, {"step": step}, "perturbation schedule")  # its declared range
    s = max(1, math.ceil(step * n_pixels - 1e-6))
    n_steps = math.ceil(n_pixels / s)
    return (torch.arange(n_steps + 1) * s).clamp(max=n_pixels)


def curve_x(x: Tensor, step: float) -> Tensor:
    """Fraction of pixels perturbed at each curve point, [B,T] (the ``<curve>_x`` output
    that report figures use as x positions; the last step may be partial)."""
    n = x.shape[-2] * x.shape[-1]
    return (schedule(n, step).to(x.device, torch.float32) / n).expand(x.shape[0], -1)


def substitute_image(x: Tensor, kind: str, seed: int | None, ids: list[int],
                     blur_kernel: int, blur_sigma: float) -> Tensor:
    """What perturbed pixels become, in the model's (normalised) input space, [B,C,H,W]:
    ``zero`` (the dataset mean colour), ``blur`` (RISE: Gaussian blur with zero padding),
    ``mean`` (each image's per-channel mean), ``noise`` (Gaussian noise with each image's
    per-channel mean and std, seeded per sample)."""
    check_choice("substitute", kind, SUBSTITUTES)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    if kind == "blur":  # blur_kernel (odd) and blur_sigma (> 0): declared by the metrics
        return gaussian_blur(x, blur_sigma, window=blur_kernel)
    mu, sd = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
    eps = per_sample_noise(tuple(x.shape[1:]), seed, ids, x.device).to(x.dtype)
    return mu + sd * eps


def curves(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor, *,
           mode: Literal["deletion", "insertion"], order: Literal["morf", "lerf"],
           step: float, substitute: str, activation: Activation | None, chunk: int,
           seed: int | None, ids: list[int], blur_kernel: int = 11,
           blur_sigma: float = 5.0, ties: Ties = "random") -> tuple[Tensor, Tensor]:
    """Score curve and its AUC.

    Args:
        x: [B,C,H,W] model input; heatmap: [B,H,W]; target: [B] int64.
        mode: ``deletion`` goes from ``x`` to the substitute, ``insertion`` back.
        ties: order of equal-valued pixels (``random``, ``rise``, ``stable``; see
            ``faithbench.metrics._order``); ``random`` is seeded by (seed, ids[i]).
    Returns:
        (auc [B], curve [B,T]): class score after each step, trapezoid area over the
        fraction of pixels perturbed in [0, 1]; NaN rows where the map is not finite.
    """
    check_choice("mode", mode, ["deletion", "insertion"])
    check_choice("order", order, ["morf", "lerf"])
    h, ok = clean(heatmap)
    b, _, hh, ww = x.shape
    counts = schedule(hh * ww, step).to(x.device)
    t = counts.numel()
    rank = ranks(h, order, ties, seed, ids).view(b, 1, hh, ww)
    # in x's dtype: under autocast a blurred substitute comes out in bf16/fp16, and lerp
    # needs both ends in one dtype (insertion under precision=bf16 failed without it)
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma).to(x.dtype)
    start, finish = (x, sub) if mode == "deletion" else (sub, x)
    # Ranks and step counts as floats (exact integers: float32 up to 2^24 pixels) make
    # the comparison write the 0/1 weights directly.
    exact = torch.float32 if hh * ww <= 2**24 else torch.float64
    rank_f, counts_f = rank.to(exact), counts.to(exact).view(-1, 1, 1, 1)
    tgt = target.to(x.device).long()

    def make(rows: Tensor) -> Tensor:
        # Rows are consecutive, so a chunk spans a few samples: per sample, broadcast
        # its rank against its steps and write straight into the chunk (no gathered
        # copies of the images). lerp with 0/1 weights is exact (weight 1 returns
        # ``end`` itself) and runs ~2x faster than torch.where on broadcast inputs.
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        out = x.new_empty((hi - lo, *x.shape[1:]))
        for i in range(lo // t, (hi - 1) // t + 1):
            a, z = max(lo, i * t), min(hi, (i + 1) * t)
            w = x.new_empty((z - a, 1, hh, ww))
            torch.lt(rank_f[i], counts_f[a - i * t : z - i * t], out=w)
            torch.lerp(start[i], finish[i], w, out=out[a - lo : z - lo])
        return out

    logits = forward_chunks(model, b * t, make, chunk)
    rows = torch.arange(b * t, device=x.device)
    curve = class_scores(logits, tgt[rows // t], activation, via_log_softmax=True).view(b, t)
    auc = torch.trapezoid(curve, counts.to(curve.dtype) / (hh * ww), dim=1)
    return nan_where(auc, ok), nan_where(curve, ok)
