"""Figures drawn by runs and reports (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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
        m = np.nan_to_num(maps[i].astype(np.float64))
        if signed:
            lim = np.abs(m).max() or 1.0
            kw = dict(cmap="bwr", vmin=-lim, vmax=lim)
        else:
            kw = dict(cmap="jet", vmin=m.min(), vmax=m.max() if m.max() > m.min() else m.min() + 1)
        axes[1, i].imshow(images[i].mean(-1), cmap="gray")
        axes[1, i].imshow(m, alpha=0.55, **kw)
        for a in axes[:, i]:
            a.set_axis_off()
    fig.suptitle(method, fontsize=9)
    return fig
