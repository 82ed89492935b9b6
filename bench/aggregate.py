"""Dataset-level statistics of per-sample values: mean and bootstrap 95% CI."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats


def _class_mean(values: np.ndarray, groups: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over classes of the per-class mean, along ``axis`` (vectorised for scipy)."""
    values, groups = np.moveaxis(values, axis, -1), np.moveaxis(groups, axis, -1)
    lead = values.shape[:-1]
    v = values.reshape(-1, values.shape[-1])
    g = groups.reshape(-1, groups.shape[-1]).astype(np.int64)
    k = int(g.max()) + 1
    rows = np.repeat(np.arange(v.shape[0]), v.shape[1]) * k + g.ravel()
    sums = np.bincount(rows, weights=v.ravel(), minlength=v.shape[0] * k).reshape(-1, k)
    counts = np.bincount(rows, minlength=v.shape[0] * k).reshape(-1, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = sums / counts
    return np.nanmean(np.where(counts > 0, per_class, np.nan), axis=1).reshape(lead)


def summarize(values: np.ndarray, groups: np.ndarray | None = None,
              how: Literal["mean", "class_mean"] = "mean", n_resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean (or mean of per-class means) and its percentile-bootstrap CI.

    Args:
        values: [N] per-sample values; NaN (undefined for that sample) is left out.
        groups: [N] class ids, needed for ``how="class_mean"``.
    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``; NaN statistics when no value is defined.
    """
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    v = values[ok]
    n = int(v.size)
    if n == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    if how == "class_mean":
        if groups is None:
            raise ValueError("class_mean needs groups")
        g = np.asarray(groups)[ok]
        data: tuple[np.ndarray, ...] = (v, g)
        stat = _class_mean
    else:
        data = (v,)
        stat = np.mean
    mean = float(stat(*data, axis=-1))
    if n == 1 or np.all(v == v[0]):
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n}
    res = stats.bootstrap(data, stat, paired=len(data) > 1, vectorized=True,
                          n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": n}
