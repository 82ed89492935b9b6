"""Dataset-level value of one output column, by the metric's registered aggregation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from faithbench.aggregate import summarize

log = logging.getLogger("faithbench.report")
NAN = {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}


def summary(frame: pd.DataFrame, key: str, how: str, n_resamples: int,
            seed: int) -> dict[str, float]:
    """``{"mean", "ci_low", "ci_high", "n"}`` of column ``key`` of ``frame`` (the
    readable rows of one run, in canonical order).

    ``mean`` and ``class_mean`` go through ``faithbench.aggregate.summarize``, exactly
    as the runner aggregates; ``curve_max`` (a dataset-level best threshold, MaxBoxAcc)
    reads the per-sample ``<key>_curve``. Any other aggregation gives NaN and a warning.
    """
    if how in ("mean", "class_mean"):
        return summarize(frame[key].to_numpy(dtype=float), frame["target"].to_numpy(),
                         how, n_resamples=n_resamples, seed=seed)  # type: ignore[arg-type]
    if how == "curve_max" and f"{key}_curve" in frame.columns:
        return curve_max(np.stack(frame[f"{key}_curve"].to_numpy()).astype(np.float64),
                         n_resamples, seed)
    log.warning("output %s: aggregation %r is not known to the report; left blank", key, how)
    return dict(NAN)


def curve_max(curve: np.ndarray, n_resamples: int = 1000, seed: int = 0,
              confidence: float = 0.95, chunk: int = 50) -> dict[str, float]:
    """``max_t mean_n curve[n, t]`` over the rows without NaN, with a percentile
    bootstrap CI that re-takes the max for every resample (the best threshold is
    chosen on each resample, as on the data).

    Args:
        curve: [N, T] per-sample values at each of T thresholds.
    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``.
    """
    rows = curve[~np.isnan(curve).any(1)]
    n = rows.shape[0]
    if n == 0:
        return dict(NAN)
    value = float(rows.mean(0).max())
    if n == 1 or np.all(rows == rows[0]):
        return {"mean": value, "ci_low": value, "ci_high": value, "n": n}
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_resamples, chunk):
        # multinomial counts = how often each row is drawn: [b, N] @ [N, T] / N
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_resamples - start))
        stats.append((w @ rows / n).max(1))
    s = np.concatenate(stats)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(s, [alpha, 1 - alpha])
    return {"mean": value, "ci_low": float(lo), "ci_high": float(hi), "n": n}
