"""Figures drawn by runs and reports (matplotlib, no display needed): the shared
publication style, one colour per method, map overlays, and saving as PNG + PDF."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Sizes in points for a figure printed at its own size (a column is ~3.3 in wide).
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "lines.linewidth": 1.4, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType in PDFs: editable, accepted by venues
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The publication style for the figures drawn inside the block."""
    with plt.rc_context(STYLE):
        yield


def method_colors(labels: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per method, stable across every figure of a report (tab10, then
    tab20 beyond ten methods)."""
    labels = sorted(dict.fromkeys(labels))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def overlay(ax: Axes, image: np.ndarray, m: np.ndarray, signed: bool, alpha: float = 0.55) -> None:
    """A map over its image in grey: signed maps with a diverging colour map centred
    on 0 (red positive, blue negative), others min-max scaled with ``jet``.

    Args:
        image: [H,W,3] RGB in [0,1]; m: [H,W] raw map (NaN shown as 0).
    """
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    if signed:
        lim = np.abs(m).max() or 1.0
        kw = dict(cmap="bwr", vmin=-lim, vmax=lim)
    else:
        kw = dict(cmap="jet", vmin=m.min(), vmax=m.max() if m.max() > m.min() else m.min() + 1)
    ax.imshow(np.asarray(image).mean(-1), cmap="gray", vmin=0, vmax=1)
    ax.imshow(m, alpha=alpha, **kw)
    image_axes(ax)


def image_axes(ax: Axes) -> None:
    """No ticks, grid or spines around an image."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)


def save(fig: Figure, stem: Path, dpi: int = 200) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; closes it. Returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=dpi)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def heatmap_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str],
                 method: str) -> Figure:
    """Images (top row) and their maps over them (bottom row).

    Args:
        images: [N,H,W,3] RGB in [0,1].
        maps: [N,H,W] raw maps; each is shown min-max normalised, signed maps with a
            diverging colour map centred on 0.
        titles: one per image.
    """
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.5), squeeze=False, layout="constrained")
    signed = bool(np.nanmin(maps) < 0) if maps.size else False
    for i in range(n):
        axes[0, i].imshow(images[i])
        axes[0, i].set_title(titles[i], fontsize=7)
        overlay(axes[1, i], images[i], maps[i], signed)
        for a in axes[:, i]:
            a.set_axis_off()
    fig.suptitle(method, fontsize=9)
    return fig
