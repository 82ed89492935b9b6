"""Correlation of a map with the model's response to removing pixels: faithfulness
correlation (Bhatt, Weller & Moura, IJCAI 2020) over random pixel subsets,
sensitivity-n (Ancona, Ceolini, Öztireli & Gross, ICLR 2018) at several subset sizes, and
faithfulness estimate (Alvarez-Melis & Jaakkola, NeurIPS 2018) over groups of pixels in
the map's order. Both read the Pearson correlation between the map's sum over the
removed pixels and the drop of the target's score."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import clean, forward_chunks, nan_where, sample_ids
from faithbench.metrics._order import Ties, ranks
from faithbench.metrics._perturb import Substitute, substitute_image
from faithbench.metrics._similarity import pearson
from faithbench.ops import Activation, class_scores, generator
from faithbench.params import Count, NonEmpty, OddSize, Positive, Range
from faithbench.types import Batch

SUBSET_STREAM = 600  # per-sample generator stream of the random pixel subsets
SENSITIVITY_N_STREAM = 650  # sensitivity_n: 650 + index of the subset size


def score_drops(model: nn.Module, x: Tensor, sub: Tensor, target: Tensor, n: int,
                removed: Callable[[Tensor], Tensor], activation: str, chunk: int) -> Tensor:
    """``f(x) - f(x')`` [B,n] for ``n`` perturbed copies per sample: row ``r`` (sample
    ``r // n``) replaces the pixels ``removed(rows)`` [R,H*W] bool with ``sub``."""
    b, c, h, w = x.shape
    tgt = target.to(x.device).long()
    base = class_scores(forward_chunks(model, b, lambda r: x[r.to(x.device)], chunk), tgt,
                        activation, via_log_softmax=True)

    def make(rows: Tensor) -> Tensor:
        i = (rows // n).to(x.device)
        m = removed(rows).view(-1, 1, h, w)
        return torch.where(m, sub[i], x[i])

    rows = torch.arange(b * n, device=x.device)
    after = class_scores(forward_chunks(model, b * n, make, chunk), tgt[rows // n], activation,
                         via_log_softmax=True)
    return base[:, None] - after.view(b, n)


def random_subsets(n_pix: int, size: int, n: int, seed: int | None, ids: list[int],
                   stream: int) -> Tensor:
    """``n`` uniform subsets of ``size`` of ``n_pix`` pixels per sample, without
    replacement, [B,n,size] flat indices: the positions of the ``size`` largest of
    ``n_pix`` uniform draws (a uniform subset; ``topk`` is ~20x faster than a full
    permutation at 224x224), drawn on the CPU from ``generator(seed, ids[i], stream)``."""
    cpu = torch.device("cpu")
    return torch.stack([torch.rand((n, n_pix), generator=generator(seed, i, cpu, stream))
                        .topk(size, dim=1).indices for i in ids])


def subset_correlation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                       subsets: Tensor, sub: Tensor, activation: str,
                       chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    """(correlation [B], map sums [B,n], score drops [B,n]) for the pixel ``subsets``
    [B,n,S] (flat indices) replaced by ``sub`` [B,C,H,W]."""
    b, n, s = subsets.shape
    flat = subsets.reshape(b * n, s).to(x.device)

    def removed(rows: Tensor) -> Tensor:
        m = torch.zeros(rows.numel(), x.shape[-2] * x.shape[-1], dtype=torch.bool, device=x.device)
        return m.scatter_(1, flat[rows.to(x.device)], True)

    drops = score_drops(model, x, sub, target, n, removed, activation, chunk)
    sums = heatmap.flatten(1).gather(1, flat.view(b, n * s)).view(b, n, s).sum(2)
    return pearson(sums, drops), sums, drops


@register(higher_is_better=True, context=("seed", "activation"))
def faithfulness_correlation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                             batch: Batch | None = None, subset: Count = 224,
                             n_samples: Count = 100, substitute: Substitute = "zero",
                             activation: Activation | None = "logit", chunk: Count = 128,
                             seed: int | None = None, blur_kernel: OddSize = 11,
                             blur_sigma: Positive = 5.0) -> dict[str, Tensor]:
    """Faithfulness correlation (Bhatt et al. 2020, Eq. 2): over ``n_samples`` random
    subsets S of ``subset`` pixels, the Pearson correlation between ``sum_{p in S} e_p``
    and ``f(x) - f(x with S replaced by substitute)``, ``f`` the target's score. Pixels
    (all channels) are removed, not channel entries. Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        subset: pixels per subset (Quantus's default 224); capped at H*W.
        n_samples: subsets per sample (Quantus's default 100).
        substitute: what removed pixels become (``zero``: the dataset mean colour; see
            ``deletion``). activation: ``logit`` (default, as Quantus), ``softmax``,
            ``sigmoid``, or null for the model's own (filled by the runner).
        seed: the subsets (per sample). chunk: images per forward.
    Returns:
        ``faithfulness_correlation`` [B] in [-1, 1] (0 where the map's subset sums or
        the drops are constant, e.g. a constant map).
        Costs n_samples + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = faithfulness_correlation(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4),
        ...                                torch.tensor([0, 1]), subset=4, n_samples=8)
        >>> out["faithfulness_correlation"].shape
        torch.Size([2])
    """
    h, ok = clean(heatmap)
    b, n_pix = x.shape[0], x.shape[-2] * x.shape[-1]
    ids = sample_ids(batch, b)
    subsets = random_subsets(n_pix, min(subset, n_pix), n_samples, seed, ids, SUBSET_STREAM)
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma)
    corr, _, _ = subset_correlation(model, x, h, target, subsets, sub, activation, chunk)
    return {"faithfulness_correlation": nan_where(corr, ok)}


@register(higher_is_better=True, context=("seed", "activation"))
def faithfulness_estimate(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                          batch: Batch | None = None, pixels_per_step: Count = 224,
                          substitute: Substitute = "zero", activation: Activation | None = "logit",
                          chunk: Count = 128, seed: int | None = None,
                          ties: Ties = "random", blur_kernel: OddSize = 11,
                          blur_sigma: Positive = 5.0) -> dict[str, Tensor]:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018, Sec. 3): split the pixels,
    in the map's most-relevant-first order, into consecutive groups of
    ``pixels_per_step``; remove each group alone (replaced by ``substitute``) and return
    the Pearson correlation between the groups' map sums and the drops of the target's
    score. Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        pixels_per_step: pixels per group (the paper removes one feature at a time;
            Quantus's ``features_in_step``, counted in channel entries there); the last
            group may be smaller. substitute, activation, chunk: as
            ``faithfulness_correlation``. ties: order of equal values (see ``deletion``);
            seed: ``ties="random"`` and ``substitute="noise"``.
    Returns:
        ``faithfulness_estimate`` [B] in [-1, 1] (0 where the group sums or the drops
        are constant). Costs ceil(H*W / pixels_per_step) + 1 forwards per sample.
    """
    h, ok = clean(heatmap)
    b, n_pix = x.shape[0], x.shape[-2] * x.shape[-1]
    ids = sample_ids(batch, b)
    t = math.ceil(n_pix / pixels_per_step)
    group = ranks(h, "morf", ties, seed, ids) // pixels_per_step  # [B,H*W] group of each pixel
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma)

    def removed(rows: Tensor) -> Tensor:
        r = rows.to(x.device)
        return group[r // t] == (r % t)[:, None]

    drops = score_drops(model, x, sub, target, t, removed, activation, chunk)
    sums = torch.zeros(b, t, dtype=torch.float64, device=x.device).scatter_add_(
        1, group, h.flatten(1).double())
    return {"faithfulness_estimate": nan_where(pearson(sums, drops), ok)}


SubsetFractions = Annotated[Sequence[Annotated[float, Range(0, 1, lo_open=True)]], NonEmpty()]


@register(higher_is_better=True, context=("seed", "activation"),
          curve_axes={"sensitivity_n_curve": "fraction of pixels removed (n / H*W)"})
def sensitivity_n(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                  batch: Batch | None = None,
                  fractions: SubsetFractions = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8),
                  n_samples: Count = 100, substitute: Substitute = "zero",
                  activation: Activation | None = "logit", chunk: Count = 128,
                  seed: int | None = None, blur_kernel: OddSize = 11,
                  blur_sigma: Positive = 5.0) -> dict[str, Tensor]:
    """Sensitivity-n (Ancona et al. 2018, Sec. 4.1): for each subset size
    ``n = max(1, round(fraction * H * W))`` pixels, the Pearson correlation over
    ``n_samples`` random subsets S between ``sum_{p in S} e_p`` and
    ``f(x) - f(x with S replaced by substitute)``; the score is its mean over the sizes.
    A map that is sensitive-n for every n (e.g. gradient x input of a linear model)
    scores 1. Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        fractions: subset sizes as shares of the pixels (default: 1 % to 80 %, log-like
            as the paper's figures). n_samples: subsets per size (the paper's 100).
        substitute, activation, chunk, seed: as ``faithfulness_correlation`` (subsets
            of size k drawn from stream 650 + k).
    Returns:
        ``sensitivity_n`` [B] the mean correlation; ``sensitivity_n_curve`` [B,N] the
        correlation at each size, with ``_x`` the fractions.
        Costs N * (n_samples + 1) forwards per sample.
    """
    h, ok = clean(heatmap)
    b, n_pix = x.shape[0], x.shape[-2] * x.shape[-1]
    ids = sample_ids(batch, b)
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma)
    curve = []
    for k, f in enumerate(fractions):
        size = min(n_pix, max(1, round(float(f) * n_pix)))
        subsets = random_subsets(n_pix, size, n_samples, seed, ids, SENSITIVITY_N_STREAM + k)
        curve.append(subset_correlation(model, x, h, target, subsets, sub, activation, chunk)[0])
    c = torch.stack(curve, 1)
    xs = torch.tensor([float(f) for f in fractions], device=x.device).expand(b, -1)
    return {"sensitivity_n": nan_where(c.mean(1), ok), "sensitivity_n_curve": nan_where(c, ok),
            "sensitivity_n_curve_x": xs}
