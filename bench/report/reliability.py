"""Do the metrics rank methods reliably, and do they agree with each other?

Krippendorff's alpha (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011)
of method rankings with every sample acting as a coder that ranks the methods: the
inter-rater reliability of a saliency metric (Tomsett et al., "Sanity Checks for
Saliency Metrics", AAAI 2020). Agreement between metrics is the Spearman correlation of
the method rankings two metrics give on the same sample, averaged over samples (their
inter-method reliability), with both metrics oriented so that 1 means "same ranking".
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from faithbench.errors import unknown_choice

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _delta2(values: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2_ck between the V distinct values [V]."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        s = c + k
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s == 0, 0.0, ((c - k) / s) ** 2)
    if level == "ordinal":  # (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over sorted values
        cum = np.concatenate([[0.0], np.cumsum(n_v)])
        i, j = np.minimum.outer(np.arange(len(values)), np.arange(len(values))), \
            np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[j + 1] - cum[i]
        return (between - (n_v[:, None] + n_v[None, :]) / 2) ** 2
    raise unknown_choice("level of measurement", level, LEVELS)


def krippendorff_alpha(data: np.ndarray, level: Level = "ordinal") -> float:
    """Krippendorff's alpha = 1 - D_o / D_e from the coincidence matrix.

    Args:
        data: [C, U] reliability data: C coders (rows) each giving a value to U units
            (columns); NaN for a missing value. Units with fewer than two values are
            not pairable and left out.
        level: the metric of differences: nominal, ordinal, interval or ratio.
    Returns:
        alpha (1: perfect agreement, 0: chance agreement); NaN when fewer than two
        pairable values exist or all values are equal (D_e = 0).

    Example (Krippendorff 2011, section C; the published alpha is 0.743 nominal):
        >>> nan = np.nan
        >>> d = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        ...               [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        ...               [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        ...               [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]])
        >>> round(krippendorff_alpha(d, "nominal"), 3)
        0.743
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"reliability data must be [coders, units]; got shape {data.shape}")
    values = np.unique(data[np.isfinite(data)])
    if values.size == 0:
        return float("nan")
    # n_uv: how many coders gave value v to unit u, [U, V]
    counts = np.stack([(data == v).sum(0) for v in values], axis=1).astype(np.float64)
    m_u = counts.sum(1)
    counts, m_u = counts[m_u >= 2], m_u[m_u >= 2]
    if counts.size == 0:
        return float("nan")
    # o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1)
    w = counts / (m_u - 1)[:, None]
    o = w.T @ counts - np.diag(w.sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    d2 = _delta2(values, n_c, level)
    d_o = (o * d2).sum()
    d_e = (np.outer(n_c, n_c) * d2).sum() / (n - 1)
    if d_e == 0:
        return float("nan")
    return float(1.0 - d_o / d_e)


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of row i of ``a`` with row i of ``b``: Pearson correlation
    of average ranks. Rows with a constant side (no ranking) give NaN.

    Args:
        a, b: [N, M] scores (M methods on N samples), no NaN.
    Returns:
        [N] correlations.
    """
    from scipy import stats

    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), np.nan)
