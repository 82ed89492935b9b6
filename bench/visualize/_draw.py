"""Mosaics and figure plumbing shared by the visualisations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from faithbench.figures import image_axes, plt


def tile(images: Tensor, ncol: int, pad: int = 1, pad_value: float = 1.0) -> Tensor:
    """Images laid out row by row: image ``i`` goes to row ``i // ncol``, column
    ``i % ncol``, with ``pad`` pixels of ``pad_value`` between them (none outside).

    Args:
        images: [N,C,h,w]; ncol: images per row (at least 1).

    Returns:
        [C, R*(h+pad)-pad, ncol*(w+pad)-pad] with R = ceil(N / ncol); empty cells are
        ``pad_value``.
    """
    n, c, h, w = images.shape
    ncol = max(1, min(ncol, n))
    rows = math.ceil(n / ncol)
    out = images.new_full((c, rows * (h + pad) - pad, ncol * (w + pad) - pad), pad_value)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[:, r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = images[i]
    return out


def to_numpy_image(x: Tensor) -> np.ndarray:
    """[3,H,W] or [H,W] tensor in [0,1] -> [H,W,3] / [H,W] float array for imshow."""
    x = x.detach().float().cpu().clamp(0, 1)
    return (x.permute(1, 2, 0) if x.dim() == 3 else x).numpy()


def image_row(images: list[Tensor], titles: list[str], size: float = 2.2,
              suptitle: str | None = None) -> Figure:
    """Images [3,H,W] (RGB in [0,1]) or maps [H,W] side by side with titles."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.35),
                             squeeze=False)
    for ax, im, t in zip(axes[0], images, titles):
        ax.imshow(to_numpy_image(im), cmap=None if im.dim() == 3 else "viridis",
                  interpolation="nearest" if im.shape[-1] < 96 else "antialiased")
        ax.set_title(t, fontsize=7)
        image_axes(ax)
    fig.tight_layout()
    if suptitle:  # a band of 0.3 in above the panel titles
        h = size + 0.35
        fig.subplots_adjust(top=fig.subplotpars.top * h / (h + 0.3))
        fig.set_size_inches(fig.get_size_inches()[0], h + 0.3)
        fig.suptitle(suptitle, fontsize=8, y=0.995)
    return fig


def mosaic_figure(mosaic: Tensor, title: str, width: float = 6.0, cmap: str = "gray") -> Figure:
    """One mosaic [3,H,W] or [H,W] as a bare figure ``width`` inches wide."""
    h, w = mosaic.shape[-2:]
    fig = plt.figure(figsize=(width, width * h / w + 0.3))
    ax = fig.add_axes((0, 0, 1, width * h / w / (width * h / w + 0.3)))
    ax.imshow(to_numpy_image(mosaic), cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=8, y=0.995)
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (PNG) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
