"""Report figures from per-sample values: curves with CI bands, metric agreement."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from faithbench import schema
from faithbench.errors import ConfigError
from faithbench.figures import style
from faithbench.report import facts
from faithbench.report.board import Board
from faithbench.report.merge import Group

DEFAULT_X = "fraction of the perturbation"


def curve_keys(b: Board) -> list[str]:
    """Per-sample curve columns (``*_curve``) of any method of the board."""
    keys = set()
    for g in b.groups:
        keys |= {c for c in g.frame.columns if schema.is_curve(c)}  # type: ignore[union-attr]
    return sorted(keys)


def curve_band(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
    """Pointwise mean and t-interval of the mean over samples (NaN skipped per step).

    Args:
        values: [N, T] per-sample curves.
    Returns:
        (mean [T], low [T], high [T], n [T]).
    """
    n = np.isfinite(values).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, 0) if values.size else np.full(values.shape[1], np.nan)
        sd = np.nanstd(values, 0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1])
        half = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n > 1, half, 0.0)
    return mean, mean - half, mean + half, n


def x_axis(b: Board, key: str, t: int) -> tuple[np.ndarray, str]:
    """x positions and label of curve ``key``: the per-sample ``<key>_x`` column when a
    metric logs one (noise levels, angles, layers), else T points evenly over [0, 1];
    the label from the metric's ``MetricInfo.curve_axes`` when it declares one."""
    x = np.linspace(0.0, 1.0, t)
    label = DEFAULT_X
    for g in b.groups:
        f = g.frame
        if schema.x_key(key) in f.columns and len(f):  # type: ignore[union-attr]
            x = np.asarray(f[schema.x_key(key)].iloc[0], dtype=float)  # type: ignore[index]
            label = "level"
            break
    for name in sorted(set().union(*(g.metric_names for g in b.groups)), key=len, reverse=True):
        if key.startswith(name):
            try:
                label = facts.metric(name).curve_axes.get(key, label)
            except ConfigError:
                pass
            break
    return x, label


def method_curve(b: Board, g: Group, key: str) -> tuple[np.ndarray, ...]:
    """(mean, low, high, x, x label) of one method's curve ``key``, computed once per
    frame: every method's view draws every curve again."""
    def make() -> tuple[np.ndarray, ...]:
        v = np.stack(g.frame[key].to_numpy()).astype(np.float64)  # type: ignore[index]
        mean, lo, hi, _ = curve_band(v)
        return (mean, lo, hi, *x_axis(b, key, v.shape[1]))

    return b.cached(("curve", g.label, key), g.frame, make)


def curves_figure(b: Board, keys: list[str], colors: dict[str, tuple],
                  controls: set[str] | None = None, highlight: str | None = None) -> Figure:
    """One panel per curve key: each method's mean curve with its 95% CI band;
    controls dashed, the grid under them. With ``highlight``, that method alone is in
    colour with its band, the others thin and grey, on the axes of the figure without
    ``highlight`` (the method's own view in the HTML page, written by ``CurveViews``:
    flipping between methods' views keeps the axes and the grey curves in place)."""
    from faithbench.report.cd import mark

    controls = controls or set()
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    with style():
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow + 0.4),
                                 squeeze=False, layout="constrained")
        for ax, key in zip(axes.flat, keys):
            ax.set_axisbelow(True)  # the grid under the curves: the views draw curves over it
            for g in b.groups:
                if key not in g.frame.columns or not len(g.frame):  # type: ignore[union-attr]
                    continue
                mean, lo, hi, x, xlabel = method_curve(b, g, key)
                ls = "--" if g.label in controls else "-"
                if highlight is not None and g.label != highlight:
                    ax.plot(x, mean, color="0.75", lw=0.7, ls=ls, zorder=1)
                    hold_band(ax, x, lo, hi)
                    continue
                ax.plot(x, mean, color=colors[g.label], ls=ls, label=mark(g.label, controls), zorder=2)
                ax.fill_between(x, lo, hi, color=colors[g.label], alpha=0.2, linewidth=0)
            ax.set_title(schema.curve_base(key))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("mean (95% CI band)")
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        legend = fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
                            frameon=False)
        wide = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.2
        if wide > fig.get_figwidth():  # many methods: widen the figure to its legend
            fig.set_figwidth(wide)
        who = f": {highlight} (grey: the other methods)" if highlight else ""
        fig.suptitle(f"{b.model} / {b.dataset}{who}", fontsize=9)
    return fig


def hold_band(ax: Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Make the limits of ``ax`` hold a band without drawing it (where ``fill_between``
    would put them)."""
    ax.update_datalim(np.column_stack([np.concatenate([x, x]), np.concatenate([lo, hi])]))


def agreement_figure(b: Board, ranking: pd.DataFrame, sample: pd.DataFrame) -> Figure:
    """Heatmaps of the Spearman agreement between metrics (+1: same ordering): of the
    method rankings per sample (when defined, >= 3 methods) and of per-sample values."""
    from faithbench.report.docs import informative

    panels = [(m, t) for m, t in ((ranking, "method rankings per sample"),
                                  (sample, "per-sample values")) if informative(m)] or [(sample, "per-sample values")]
    k = len(ranking)
    side = max(2.4, 0.55 * k + 1.2)
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * side + 0.6, side),
                                 layout="constrained", squeeze=False)
        axes = axes[0]
        for ax, (m, title) in zip(axes, panels):
            im = ax.imshow(m.to_numpy(dtype=float), cmap="RdBu", vmin=-1, vmax=1)
            ax.set_xticks(range(k), m.columns, rotation=40, ha="right")
            ax.set_yticks(range(k), m.index)
            ax.grid(False)
            for i in range(k):
                for j in range(k):
                    v = m.iat[i, j]
                    ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center",
                            va="center", fontsize=7, color="white" if abs(v) > 0.6 else "black")
            ax.set_title(f"Spearman: {title}")
        fig.colorbar(im, ax=axes, shrink=0.8, label="agreement")
        fig.suptitle(f"{b.model} / {b.dataset}: do the metrics agree?", fontsize=9)
    return fig
