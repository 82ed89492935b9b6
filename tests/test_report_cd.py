"""Critical-difference diagrams drawn with few artists: the lines of a diagram, one
artist per style, look as the same lines drawn one artist each (where lines overlap,
tied methods' lines, their antialiased edges are blended once instead of once per line)."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from faithbench.report.cd import cd_figure, polylines
from faithbench.report.ranks import RankTest


def _pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=int)


def _axes():
    fig = plt.figure(figsize=(3, 2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(2, -1)
    ax.axis("off")
    return fig, ax


def test_polylines_draw_what_one_line_each_draws():
    lines = [([1, 1, 0.2], [0, 1, 1]), ([4, 4, 9.8], [0, 1.5, 1.5]), ([5.5, 7], [0.4, 0.4])]
    fig, ax = _axes()
    polylines(ax, lines, color="black", lw=0.6)
    assert len(ax.lines) == 1
    one = _pixels(fig)
    fig, ax = _axes()
    for x, y in lines:
        ax.plot(x, y, color="black", lw=0.6)
    each = _pixels(fig)
    assert (one < 128).any() and np.array_equal(one, each)


def test_cd_figure_draws_its_lines_as_a_few_artists():
    k = 9
    labels = [f"m{i}" for i in range(k)]
    t = RankTest("deletion", "samples", labels, pd.Series(np.linspace(1.5, 8.0, k), index=labels), 40,
                 30.0, 1e-4, 2.0, 0.05, "holm", nemenyi=[labels[:4], labels[3:7]], wilcoxon=[labels[:2]])
    fig = cd_figure(t, {"m8"}, "title")
    ax = fig.axes[0]
    # the axis and its ticks, the CD, the Nemenyi and the Wilcoxon cliques, the labels' lines
    assert len(ax.lines) == 5
    segments = [np.isnan(line.get_xdata()).sum() for line in ax.lines]
    assert segments == [k + 1, 0, 2, 1, k]
    assert [t.get_text() for t in ax.texts][:k] == [str(r) for r in range(1, k + 1)]
    assert any(t.get_text() == "m8 †  8.00" or t.get_text() == "8.00  m8 †" for t in ax.texts)
    plt.close(fig)
