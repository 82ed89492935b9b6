"""Paired tests between methods, multiple-comparison corrections and ranks.

Wilcoxon signed-rank test (Wilcoxon 1945) on the per-sample differences of two methods
scored on the same samples, with the matched-pairs rank-biserial correlation as effect
size (Kerby 2014); Holm's step-down (Holm 1979) or Benjamini–Hochberg's step-up (1995)
adjustment of the p-values of one family of tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats

from faithbench.errors import unknown_choice

Correction = Literal["holm", "bh", "none"]
CORRECTIONS = ("holm", "bh", "none")


def wilcoxon(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of ``a - b`` over the pairs where both are
    defined. Zero differences are dropped (Wilcoxon's convention); the p-value uses the
    exact null distribution for up to 50 pairs without ties, else the normal
    approximation (tie-corrected variance, no continuity correction): scipy's own
    choice would run a slow permutation test for small samples with ties.

    Args:
        a, b: [N] per-sample values of two methods on the same samples (NaN: undefined).
    Returns:
        ``n`` pairs used, ``statistic`` (scipy's: min(W+, W-)), ``p``, ``effect`` the
        rank-biserial correlation in [-1, 1] (positive: ``a`` tends to be larger),
        ``mean_diff`` mean of ``a - b``. ``p`` is 1 when every difference is 0 and NaN
        when no pair is defined.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    out = {"n": float(d.size), "statistic": np.nan, "p": np.nan,
           "effect": np.nan, "mean_diff": float(d.mean()) if d.size else np.nan}
    if d.size == 0:
        return out
    if not np.any(d != 0):
        return {**out, "statistic": 0.0, "p": 1.0, "effect": 0.0}
    d = d[d != 0]
    r, ties = _average_ranks(np.abs(d))
    n = d.size
    plus = float(r[d > 0].sum())
    minus = n * (n + 1) / 2 - plus
    if n <= 50 and ties.max() == 1:  # exact: W+ is an integer
        null = _signed_rank_null(n)
        w = int(round(plus))
        p = min(1.0, 2 * min(float(null[w:].sum()), float(null[: w + 1].sum())))
    else:  # normal approximation with the tie-corrected variance
        se = math.sqrt((n * (n + 1) * (2 * n + 1) - float((ties**3 - ties).sum()) / 2) / 24)
        p = math.erfc(abs(plus - n * (n + 1) / 4) / se / math.sqrt(2)) if se > 0 else 1.0
    return {**out, "statistic": min(plus, minus), "p": p,
            "effect": (plus - minus) / (plus + minus)}


@functools.lru_cache(maxsize=None)
def _signed_rank_null(n: int) -> np.ndarray:
    """P(W+ = w) for w = 0 .. n(n+1)/2 when each of the ranks 1..n is positive with
    probability 1/2 independently (the signed-rank null without ties): built one rank
    at a time, rank k adding k to W+ or not."""
    p = np.ones(1)
    for k in range(1, n + 1):
        grown = np.zeros(p.size + k)
        grown[: p.size] += p / 2
        grown[k:] += p / 2
        p = grown
    return p


def _average_ranks(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of ``v`` with ties given their average rank, and the size of each
    group of equal values (what scipy's ``rankdata`` gives, without its per-call
    overhead: a report runs thousands of paired tests)."""
    order = np.argsort(v, kind="mergesort")
    s = v[order]
    new = np.r_[True, s[1:] != s[:-1]]
    first = np.flatnonzero(new)
    counts = np.diff(np.r_[first, s.size])
    ranks = np.empty(v.size)
    ranks[order] = (first + (counts + 1) / 2)[np.cumsum(new) - 1]
    return ranks, counts


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation ``(W+ - W-) / (W+ + W-)`` (Kerby 2014):
    the share of rank mass of positive differences minus that of negative ones, zero
    differences dropped and tied |d| given average ranks.

    Args:
        d: [N] paired differences.
    Returns:
        r in [-1, 1]; NaN when every difference is 0.

    Example:
        >>> rank_biserial(np.array([1.0, 2.0, -3.0]))  # W+ = 1 + 2, W- = 3
        0.0
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    r, _ = _average_ranks(np.abs(d))
    plus, minus = r[d > 0].sum(), r[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def _step_adjust(p: np.ndarray, step: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Adjusted p-values of the family of finite entries of ``p``: ``step(sorted, m)``
    maps the ascending p-values to their adjusted values; NaN entries are left out of
    the family (m counts the defined ones) and stay NaN; capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if idx.size == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    out[order] = np.minimum(step(p[order], idx.size), 1.0)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(i) * (m - i + 1)``,
    made monotone by a running maximum and capped at 1. NaN entries are left out of the
    family (m counts the defined ones) and stay NaN.

    Example:
        >>> holm(np.array([0.01, 0.04, 0.03])).round(4).tolist()
        [0.03, 0.06, 0.06]
    """
    return _step_adjust(p, lambda s, m: np.maximum.accumulate(s * (m - np.arange(m))))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate):
    ``min_{j >= i} p_(j) * m / j``, capped at 1; NaN entries are left out and stay NaN.

    Example:
        >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03])).round(4).tolist()
        [0.03, 0.04, 0.04]
    """
    return _step_adjust(p, lambda s, m: np.minimum.accumulate((s * m / np.arange(1, m + 1))[::-1])[::-1])


def adjust(p: np.ndarray, correction: str) -> np.ndarray:
    """Adjusted p-values of one family under ``correction`` (holm | bh | none)."""
    if correction == "holm":
        return holm(p)
    if correction == "bh":
        return benjamini_hochberg(p)
    if correction == "none":
        return np.asarray(p, dtype=np.float64).copy()
    raise unknown_choice("correction", correction, CORRECTIONS)


def ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks along the last axis, 1 = best, ties share their average rank; NaN values
    get NaN ranks and do not take a rank.

    Args:
        values: [..., M] scores of M methods.
    Returns:
        [..., M] float ranks.

    Example:
        >>> ranks(np.array([0.2, 0.5, 0.5, np.nan]), higher_is_better=True).tolist()
        [3.0, 1.5, 1.5, nan]
    """
    v = np.asarray(values, dtype=np.float64)
    key = -v if higher_is_better else v
    return stats.rankdata(key, axis=-1, nan_policy="omit")
