"""Dataset-level statistics of per-sample values: mean and bootstrap 95% CI."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from faithbench.errors import ConfigError

log = logging.getLogger("faithbench")
NAN = {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}


def _class_mean(values: np.ndarray, groups: np.ndarray, axis: int = -1,
                num_classes: int | None = None) -> np.ndarray:
    """Mean over classes of the per-class mean, along ``axis`` (vectorised for scipy).
    ``num_classes=None``: over the classes present (with a defined value); an int K:
    over all K classes of the label space, an absent class counting 0 (TorchRay's
    ``hits / (hits + misses).clamp(min=1)``, then ``.mean()``)."""
    values, groups = np.moveaxis(values, axis, -1), np.moveaxis(groups, axis, -1)
    lead = values.shape[:-1]
    v = values.reshape(-1, values.shape[-1])
    g = groups.reshape(-1, groups.shape[-1]).astype(np.int64)
    k = int(g.max()) + 1 if num_classes is None else int(num_classes)
    rows = np.repeat(np.arange(v.shape[0]), v.shape[1]) * k + g.ravel()
    sums = np.bincount(rows, weights=v.ravel(), minlength=v.shape[0] * k).reshape(-1, k)
    counts = np.bincount(rows, minlength=v.shape[0] * k).reshape(-1, k)
    if num_classes is not None:
        return (sums / np.maximum(counts, 1)).mean(axis=1).reshape(lead)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = sums / counts
    return np.nanmean(np.where(counts > 0, per_class, np.nan), axis=1).reshape(lead)


def summarize(values: np.ndarray, groups: np.ndarray | None = None,
              how: Literal["mean", "class_mean"] = "mean", n_resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0,
              num_classes: int | None = None) -> dict[str, float]:
    """Mean (or mean of per-class means) and its percentile-bootstrap CI.

    Args:
        values: [N] per-sample values; NaN (undefined for that sample) is left out.
        groups: [N] class ids in ``[0, num_classes)``, needed for ``how="class_mean"``.
        num_classes: ``class_mean`` over the classes present (None) or over all
            ``num_classes`` of the label space, absent classes counting 0 (TorchRay).
    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``, and for ``class_mean`` ``"classes"``:
        how many classes the mean is over. NaN statistics when no value is defined.
    """
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    v = values[ok]
    n = int(v.size)
    extra: dict[str, float] = {}
    if how == "class_mean":
        if groups is None:
            raise ValueError("class_mean needs groups")
        g = np.asarray(groups)[ok].astype(np.int64)
        if num_classes is not None and g.size and (g.min() < 0 or g.max() >= num_classes):
            raise ValueError(f"class ids {g.min()}..{g.max()} outside the label space of "
                             f"num_classes={num_classes}")
        extra["classes"] = float(len(np.unique(g)) if num_classes is None else num_classes)
        data: tuple[np.ndarray, ...] = (v, g)
        stat = functools.partial(_class_mean, num_classes=num_classes)
    else:
        data = (v,)
        stat = np.mean
    if n == 0:
        return {**NAN, **extra}
    mean = float(stat(*data, axis=-1))
    if n == 1 or np.all(v == v[0]) and num_classes is None:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n, **extra}
    res = stats.bootstrap(data, stat, paired=len(data) > 1, vectorized=True,
                          n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": n, **extra}


def class_space(params: Mapping[str, Any]) -> int | None:
    """The ``num_classes`` of a metric's ``class_mean`` from its resolved ``params``:
    the label-space size for ``class_mean="label_space"`` (the runner fills
    ``num_classes`` from the model), None (the classes present) otherwise."""
    if params.get("class_mean", "present") != "label_space":
        return None
    k = params.get("num_classes")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"class_mean='label_space' needs num_classes >= 1 (the label-space "
                          f"size); got num_classes={k!r}")
    return k


# (frame, key, n_resamples, seed, num_classes) -> {"mean", "ci_low", "ci_high", "n", ...}
Compute = Callable[[pd.DataFrame, str, int, int, int | None], dict[str, float]]


@dataclass(frozen=True)
class Aggregation:
    """A metric's dataset-level statistic of one output column (torchmetrics'
    ``compute``), declared by the metric (``register(aggregate=...)``); the runner and
    the report both call it, so they cannot disagree. ``name`` is what ``faithbench
    list`` and the report's tables show."""

    name: str
    compute: Compute

    def __call__(self, frame: pd.DataFrame, key: str, n_resamples: int = 1000, seed: int = 0,
                 num_classes: int | None = None) -> dict[str, float]:
        """``{"mean", "ci_low", "ci_high", "n"}`` (and ``"classes"`` for a class mean) of
        output ``key`` over the readable rows ``frame`` of one run; ``num_classes``: the
        label-space size of a class mean (``class_space``), None for the classes present."""
        return self.compute(frame, key, n_resamples, seed, num_classes)


def _mean_column(frame: pd.DataFrame, key: str, n_resamples: int, seed: int,
          num_classes: int | None) -> dict[str, float]:
    return summarize(frame[key].to_numpy(dtype=float), None, "mean", n_resamples=n_resamples,
                     seed=seed)


def _class_mean_column(frame: pd.DataFrame, key: str, n_resamples: int, seed: int,
                num_classes: int | None) -> dict[str, float]:
    return summarize(frame[key].to_numpy(dtype=float), frame["target"].to_numpy(), "class_mean",
                     n_resamples=n_resamples, seed=seed, num_classes=num_classes)


MEAN = Aggregation("mean", _mean_column)  # the default: mean over samples with its bootstrap CI
CLASS_MEAN = Aggregation("class_mean", _class_mean_column)  # grouped by the ``target`` column
BUILTIN = {a.name: a for a in (MEAN, CLASS_MEAN)}


def summarize_column(frame: pd.DataFrame, key: str, how: str | Aggregation,
                     n_resamples: int = 1000, seed: int = 0,
                     num_classes: int | None = None) -> dict[str, float]:
    """``how(frame, key, ...)``: output ``key`` of one run summarised by an aggregation,
    or by the name of a built-in one (``mean``, ``class_mean``); an unknown name is
    logged and left blank."""
    if isinstance(how, str):
        if how not in BUILTIN:
            log.warning("output %s: aggregation %r is unknown (valid: %s); left blank", key, how,
                        ", ".join(BUILTIN))
            return dict(NAN)
        how = BUILTIN[how]
    return how(frame, key, n_resamples, seed, num_classes)


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
    from faithbench.metrics import localisation  # lazy: metric info imports this module

    value, _ = localisation.curve_max(curve)  # the metric's own dataset-level score
    rows = curve[~np.isnan(curve).any(1)]
    n = rows.shape[0]
    if n == 0:
        return dict(NAN)
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
