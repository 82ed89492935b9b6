"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

Pixels are removed most-relevant first (MoRF) and least-relevant first (LeRF) at fixed
fractions, and filled by noisy linear imputation (``_imputation``) instead of a constant,
so the perturbed image stays close to the data and the mask's shape does not leak the
class (the confound of pixel deletion the paper measures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.metrics import register
from faithbench.metrics._common import (Activation, clean, forward_chunks, nan_where,
                                        sample_ids)
from faithbench.metrics._imputation import noisy_linear_impute
from faithbench.metrics._order import Ties, ranks
from faithbench.ops import class_scores, generator
from faithbench.params import Count, NonEmpty, NonNegative, Range
from faithbench.preprocess import Preprocess
from faithbench.types import Batch

PAPER_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the paper's Fig. 5-7
ROAD_STREAM = 400  # per-sample generator streams of the imputation noise (400 + curve point)
REMOVED_AXIS = "fraction of pixels removed"

Fractions = Annotated[Sequence[Annotated[float, Range(0, 1, hi_open=True)]], NonEmpty()]


def removed_counts(n_pixels: int, fractions: Sequence[float]) -> list[int]:
    """Pixels removed at each fraction: ``floor(fraction * N)`` as the paper's code
    (``int(width * height * th_p)``), with 1e-6 of slack so 0.3 * 100 is 30."""
    return [math.floor(f * n_pixels + 1e-6) for f in fractions]


def noise_scale(noise: float, preprocess: Preprocess | None, x: Tensor) -> Tensor:
    """The std of the imputation noise in the model's input units, [C,1,1]: ``noise`` is
    in pixel units (the paper's 0.01 on images in [0, 1]), mapped through the model's
    normalisation (per channel: ``noise * pixel_scale / std``)."""
    c = x.shape[1]
    if noise == 0:
        return x.new_zeros(c, 1, 1)
    if preprocess is None:
        raise ConfigError(f"road: noise={noise!r} is in pixel units and needs the model's "
                          "preprocess (context parameter 'preprocess') to reach the model's "
                          "input units; pass it, or set noise=0")
    zero = torch.zeros(c, 1, 1, dtype=x.dtype, device=x.device)
    return preprocess.normalize(zero + noise) - preprocess.normalize(zero)


@register(higher_is_better=True, context=("seed", "activation", "preprocess"),
          outputs={"road_morf": False, "road_lerf": True},
          curve_axes={"road_morf_curve": REMOVED_AXIS, "road_lerf_curve": REMOVED_AXIS})
def road(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
         batch: Batch | None = None, fractions: Fractions = PAPER_FRACTIONS,
         noise: NonNegative = 0.01, activation: Activation | None = None,
         preprocess: Preprocess | None = None, chunk: Count = 64,
         seed: int | None = None, ties: Ties = "random") -> dict[str, Tensor]:
    """ROAD (Rong et al. 2022): at each of ``fractions``, remove that share of the pixels
    most relevant first (MoRF) and, separately, least relevant first (LeRF), impute them
    by noisy linear imputation (neighbour weights 1/6 and 1/12, Gaussian noise of std
    ``noise``), and read the target's class score (softmax, or sigmoid for multi-label).
    A faithful map drops the score fast under MoRF and keeps it under LeRF; the score is
    ``mean(LeRF) - mean(MoRF)`` over the fractions. Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        fractions: shares of pixels removed, each in [0, 1) (default the paper's 10%,
            20%, ..., 90%); ``floor(fraction * H * W)`` pixels, as the paper's code.
        noise: std of the imputation noise in pixel units of images in [0, 1] (the
            paper's 0.01), converted with ``preprocess``; 0 for plain linear imputation.
        chunk: perturbed images per forward (and per imputation solve).
        seed: imputation noise and ``ties="random"`` (per sample and fraction).
        ties: order of pixels of equal relevance (``random``, ``rise``, ``stable``; see
            ``faithbench.metrics._order``). The paper's code breaks ties by adding
            1e-4 * N(0, 1) to the min-max normalised map, a random order as ``random``.
    Returns:
        ``road`` [B] in [-1, 1]; ``road_morf``, ``road_lerf`` [B] mean scores over the
        fractions; ``road_morf_curve``, ``road_lerf_curve`` [B,P] the score at each
        fraction, with ``_x`` [B,P] the fractions.
        Costs 2P forwards and 2P imputations per sample (P fractions).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = road(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), torch.tensor([0, 1]), noise=0.0)
        >>> out["road"].shape, out["road_morf_curve"].shape
        (torch.Size([2]), torch.Size([2, 9]))
    """
    h, ok = clean(heatmap)
    b, _, hh, ww = x.shape
    ids = sample_ids(batch, b)
    counts = torch.tensor(removed_counts(hh * ww, fractions), device=x.device)
    p = counts.numel()
    # Rows: sample i, order o (0 MoRF, 1 LeRF), fraction k at row (2 * i + o) * p + k.
    rank = torch.stack([ranks(h, "morf", ties, seed, ids), ranks(h, "lerf", ties, seed, ids)], 1)
    scale = noise_scale(noise, preprocess, x)

    def make(rows: Tensor) -> Tensor:
        i, o, k = rows // (2 * p), (rows // p) % 2, rows % p
        removed = (rank[i, o] < counts[k, None]).view(-1, hh, ww)
        eps = torch.stack([torch.randn(x.shape[1:], generator=generator(seed, ids[int(s)], x.device,
                                                                      ROAD_STREAM + int(q)),
                                       device=x.device)
                           for s, q in zip(i.tolist(), (o * p + k).tolist())])
        return noisy_linear_impute(x[i.to(x.device)], removed, scale * eps.to(x.dtype))

    logits = forward_chunks(model, b * 2 * p, make, chunk)
    rows = torch.arange(b * 2 * p, device=x.device)
    tgt = target.to(x.device).long()
    curve = class_scores(logits, tgt[rows // (2 * p)], activation, via_log_softmax=True).view(b, 2, p)
    morf, lerf = curve[:, 0].mean(1), curve[:, 1].mean(1)
    frac_x = torch.tensor([float(f) for f in fractions], device=x.device).expand(b, -1)
    return {"road": nan_where(lerf - morf, ok), "road_morf": nan_where(morf, ok),
            "road_lerf": nan_where(lerf, ok), "road_morf_curve": nan_where(curve[:, 0], ok),
            "road_lerf_curve": nan_where(curve[:, 1], ok), "road_morf_curve_x": frac_x,
            "road_lerf_curve_x": frac_x}
