"""Figures drawn by runs and reports (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """A map blended over the grey image: [H,W,3] in [0,1] and [H,W] -> [H,W,3].

    Signed maps use a diverging colour map centred on 0 (``bwr``), non-negative maps
    ``jet`` from their min to their max; NaN shows as 0."""
    m = np.nan_to_num(heat.astype(np.float64))
    if m.min() < 0:
        lim = np.abs(m).max() or 1.0
        rgb = plt.get_cmap("bwr")((m / lim + 1) / 2)[..., :3]
    else:
        span = m.max() - m.min()
        rgb = plt.get_cmap("jet")((m - m.min()) / span if span > 0 else np.zeros_like(m))[..., :3]
    grey = image.mean(-1, keepdims=True)
    return (1 - alpha) * grey + alpha * rgb


def heatmap_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str],
                 method: str) -> Figure:
    """Images (top row) and their maps over them (bottom row), as one mosaic.

    Args:
        images: [N,H,W,3] RGB in [0,1].
        maps: [N,H,W] raw maps (see ``overlay`` for the colour scales).
        titles: one per image.
    """
    n, h, w = maps.shape
    pad = max(2, w // 16)
    mosaic = np.ones((2 * h + pad, n * (w + pad) - pad, 3))
    for i in range(n):
        x0 = i * (w + pad)
        mosaic[:h, x0 : x0 + w] = images[i]
        mosaic[h + pad :, x0 : x0 + w] = overlay(images[i], maps[i])
    fig = plt.figure(figsize=(1.5 * n, 3.4))
    ax = fig.add_axes((0, 0, 1, 0.86))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for i, t in enumerate(titles):
        ax.text(i * (w + pad) + w / 2, -2, t, ha="center", va="bottom", fontsize=7)
    fig.suptitle(method, fontsize=9, y=0.99)
    return fig
