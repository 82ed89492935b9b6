"""Critical-difference diagrams (Demšar, JMLR 2006, fig. 1-2): methods on an axis of
mean ranks, bars joining the methods a post-hoc test does not tell apart (Nemenyi:
mean ranks closer than the critical difference; Wilcoxon–Holm, Benavoli et al. 2016:
no significant pairwise test), sized for one column of a paper."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from faithbench.figures import style
from faithbench.report.ranks import RankTest

COLUMN_IN = 3.3  # one column of a two-column paper, in inches
PROCEDURES = {"nemenyi": ("Nemenyi", "0.55"), "wilcoxon": ("Wilcoxon–Holm", "black")}


def mark(label: str, controls: set[str]) -> str:
    """A method's label as figures and tables print it: controls say so."""
    return f"{label} (control)" if label in controls else label


def polylines(ax: Axes, lines: list[tuple[list[float], list[float]]], **kw: object) -> None:
    """Draw several (x, y) polylines as one line artist, NaN breaking it between them:
    much cheaper to make and draw than one artist each (a diagram has ~50)."""
    nan = [math.nan]
    ax.plot(sum((list(x) + nan for x, _ in lines), []), sum((list(y) + nan for _, y in lines), []), **kw)


def cd_figure(t: RankTest, controls: set[str], title: str) -> Figure:
    """The diagram of one rank test: rank 1 (best) on the left; the better half of the
    methods is labelled on the left, the other half on the right; grey bars are the
    Nemenyi cliques (with the CD drawn above the axis), black bars the Wilcoxon–Holm
    (or the test's correction) cliques. Controls are printed in grey italics with a
    dagger, explained in the title.

    Args:
        t: the rank test (mean ranks over ``t.n`` blocks of ``t.blocks``).
        controls: labels of control methods.
    """
    k = len(t.labels)
    ranks = {lab: float(r) for lab, r in t.mean_ranks.items()}
    half = math.ceil(k / 2)
    step = 0.22  # vertical spacing of labels, in axis units (~ one 7-pt line)
    bars = [(p, g) for p in ("nemenyi", "wilcoxon") for g in getattr(t, p)]
    top = 0.28 + 0.09 * len(bars)  # first label line below the bars
    depth = top + step * max(half, k - half)
    # label margins sized to the longest label (~0.05 in per 6.5-pt character), so the
    # figure keeps its one-column width unless the labels cannot fit in it
    name = lambda lab: f"{lab} †" if lab in controls else lab  # noqa: E731
    margin = 0.1 + 0.05 * max(len(f"{name(lab)}  00.00") for lab in t.labels)
    width = max(COLUMN_IN, 2 * margin + max(0.9, 0.12 * k))  # >= 0.12 in per rank
    axes_h, title_h = 0.55 * (depth + 0.6), 0.42
    height = axes_h + title_h + 0.05
    with style():
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((margin / width, 0.05 / height, 1 - 2 * margin / width, axes_h / height))
        ax.set_xlim(0.8, k + 0.2)
        ax.set_ylim(depth + 0.05, -0.55)
        ax.axis("off")
        polylines(ax, [([1, k], [0, 0])] + [([r, r], [0, -0.08]) for r in range(1, k + 1)],
                  color="black", lw=0.8)
        for r in range(1, k + 1):
            if k <= 12 or r % 2 == 1:
                ax.text(r, -0.12, str(r), ha="center", va="bottom", fontsize=6)
        if math.isfinite(t.cd) and t.cd < k - 1:  # the CD as a bracket above the axis
            ax.plot([1, 1 + t.cd], [-0.42, -0.42], color="0.55", lw=1.2)
            ax.text(1 + t.cd / 2, -0.48, f"CD = {t.cd:.2f}", ha="center", va="bottom", fontsize=6)
        for proc, (_, color) in PROCEDURES.items():  # cliques, each a bar a little lower
            cliques = [(0.17 + 0.09 * i, [ranks[lab] for lab in g]) for i, (p, g) in enumerate(bars) if p == proc]
            polylines(ax, [([min(r) - 0.04, max(r) + 0.04], [y, y]) for y, r in cliques],
                      color=color, lw=2.2, solid_capstyle="round")
        ends = []  # each label's line from its mean rank
        for i, lab in enumerate(t.labels):
            r = ranks[lab]
            left = i < half
            y = top + step * (i if left else k - 1 - i)
            end = 0.8 if left else k + 0.2
            ends.append(([r, r, end], [0, y, y]))
            ctrl = lab in controls
            ax.text(end + (-0.05 if left else 0.05), y, f"{name(lab)}  {r:.2f}" if left
                    else f"{r:.2f}  {name(lab)}", ha="right" if left else "left",
                    va="center", fontsize=6.5, color="0.45" if ctrl else "black",
                    style="italic" if ctrl else "normal")
        polylines(ax, ends, color="black", lw=0.6)
        friedman = "–" if math.isnan(t.p) else f"{t.p:.2g}"
        corr = {"holm": "Holm", "bh": "Benjamini-Hochberg"}.get(t.correction, t.correction)
        fig.text(0.5, 1 - 0.02 / height, f"{title}\nFriedman p = {friedman}, N = {t.n} {t.blocks}\n"
                 f"grey: Nemenyi (alpha = {t.alpha:g}); black: Wilcoxon, {corr}-corrected"
                 + ("; † control" if controls & set(t.labels) else ""),
                 ha="center", va="top", fontsize=6, linespacing=1.25)
    return fig
