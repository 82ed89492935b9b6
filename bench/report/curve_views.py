"""Each method's own view of a section's curves (the HTML page's drill-down), written
at a fraction of the cost of drawing each as its own figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from PIL import Image

from faithbench import schema
from faithbench.figures import style
from faithbench.pixels import PNG_LEVEL
from faithbench.report.board import Board
from faithbench.report.plots import hold_band, method_curve


class CurveViews:
    """``curves_figure(b, keys, colors, controls, highlight=label)`` of every label,
    written as PNGs at a fraction of the cost of drawing each: the views share their
    axes, so what they share (axes, grid, ticks, labels, panel titles) is rendered once,
    and each view draws only its curves, band, legend and title over a copy of it.
    Close it at the end."""

    def __init__(self, b: Board, keys: list[str], colors: dict[str, tuple],
                 controls: set[str] | None = None, dpi: int = 90) -> None:
        self.b, self.keys, self.colors, self.controls = b, keys, colors, controls or set()
        self.dpi = dpi
        self.grey: list[dict[str, Line2D]] = []  # per panel: label -> its grey curve, in drawing order
        self.added: list[Any] = []  # the current view's coloured curves and bands
        self.legend: Any = None
        self.background: tuple[Any, Any] | None = None  # (what it was drawn for, its pixels)
        ncol = min(3, len(keys))
        nrow = math.ceil(len(keys) / ncol)
        with style():  # animated artists: left out of the shared part, drawn per view
            self.fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow + 0.4), dpi=dpi,
                                          squeeze=False, layout="constrained")
            self.axes = list(axes.flat)
            for ax, key in zip(self.axes, keys):
                ax.set_axisbelow(True)
                self.grey.append({})
                for g in b.groups:
                    if key not in g.frame.columns or not len(g.frame):  # type: ignore[union-attr]
                        continue
                    mean, lo, hi, x, xlabel = method_curve(b, g, key)
                    ls = "--" if g.label in self.controls else "-"
                    self.grey[-1][g.label] = ax.plot(x, mean, color="0.75", lw=0.7, ls=ls, zorder=1,
                                                     animated=True)[0]
                    hold_band(ax, x, lo, hi)
                ax.set_title(schema.curve_base(key))
                ax.set_xlabel(xlabel)
                ax.set_ylabel("mean (95% CI band)")
            for ax in self.axes[len(keys):]:
                ax.set_visible(False)
            self.title = self.fig.suptitle("", fontsize=9, animated=True)

    def save(self, label: str, stem: Path) -> list[Path]:
        """Write the view of ``label`` as ``stem.png`` (RGBA, as ``figures.save``
        writes it); returns ``[stem.png]``."""
        drawn_for, artists = self._restyle(label)
        if self.background is None or self.background[0] != drawn_for:
            # lays out and draws all but the animated artists, outside the style as
            # ``figures.save`` draws a figure (the tick locators read the label size then)
            self.fig.canvas.draw()
            self.background = (drawn_for, self.fig.canvas.copy_from_bbox(self.fig.bbox))
        self.fig.canvas.restore_region(self.background[1])
        for artist in artists:
            self.fig.draw_artist(artist)
        path = stem.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())).save(
            path, compress_level=PNG_LEVEL, dpi=(self.dpi, self.dpi))
        return [path]

    def save_all(self, stems: dict[str, Path]) -> dict[str, list[Path]]:
        """``save(label, stem)`` for every label, in an order that draws each
        background once."""
        need = {lab: repr(self._restyle(lab)[0]) for lab in stems}
        return {lab: self.save(lab, stems[lab]) for lab in sorted(stems, key=need.__getitem__)}

    def _restyle(self, label: str) -> tuple[Any, list[Any]]:
        """Put the view of ``label`` in the figure. Returns what its background depends
        on (the axes' limits; the layout, which makes room for the title and legend,
        whose height depends on their text: "_" reaches lower than "p") and the
        artists it draws over the background, in the order ``curves_figure`` draws them."""
        from faithbench.report.cd import mark

        for artist in self.added:
            artist.remove()
        self.added = []
        color, ls = self.colors[label], "--" if label in self.controls else "-"
        artists = []
        with style():
            for ax, key, grey in zip(self.axes, self.keys, self.grey):
                panel: list[Any] = [line for lab, line in grey.items() if lab != label]
                if label in grey:
                    g = next(g for g in self.b.groups if g.label == label)
                    mean, lo, hi, x, _ = method_curve(self.b, g, key)
                    line = ax.plot(x, mean, color=color, ls=ls, label=mark(label, self.controls), zorder=2,
                                   animated=True)[0]
                    band = ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0, animated=True)
                    panel.insert(list(grey).index(label), band)  # zorder 1, where its curve was added
                    panel.append(line)  # zorder 2: over the grey curves
                    self.added += [line, band]
                artists += panel
            if self.legend is not None:
                self.legend.remove()
            handles, labels = self.axes[0].get_legend_handles_labels()
            self.legend = self.fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
                                          frameon=False)
            self.legend.set_animated(True)
            self.title.set_text(f"{self.b.model} / {self.b.dataset}: {label} (grey: the other methods)")
        r = self.fig.canvas.get_renderer()
        drawn_for = ([(ax.get_xlim(), ax.get_ylim()) for ax in self.axes],
                     [a.get_tightbbox(r).height for a in (self.title, self.legend)])
        return drawn_for, [*artists, self.title, self.legend]

    def close(self) -> None:
        plt.close(self.fig)
