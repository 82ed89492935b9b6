"""Figures drawn by runs and reports (matplotlib, no display needed): the shared
publication style, one colour per method, map overlays, and saving as PNG + PDF."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

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


def blend(image: np.ndarray, heat: np.ndarray, signed: bool | None = None,
          alpha: float = 0.55) -> np.ndarray:
    """A map blended over its image in grey: [H,W,3] in [0,1] and [H,W] -> [H,W,3].

    Signed maps use a diverging colour map centred on 0 (``bwr``: red positive, blue
    negative), others ``jet`` from their min to their max; NaN shows as 0. ``signed=None``
    decides per map (any negative value); pass it to give a set of maps one convention."""
    m = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    if signed if signed is not None else bool(m.min() < 0):
        lim = np.abs(m).max() or 1.0
        rgb = plt.get_cmap("bwr")((m / lim + 1) / 2)[..., :3]
    else:
        span = m.max() - m.min()
        rgb = plt.get_cmap("jet")((m - m.min()) / span if span > 0 else np.zeros_like(m))[..., :3]
    grey = np.asarray(image, dtype=np.float64).mean(-1, keepdims=True)
    return (1 - alpha) * grey + alpha * rgb


def overlay(ax: Axes, image: np.ndarray, m: np.ndarray, signed: bool, alpha: float = 0.55) -> None:
    """Draw ``blend(image, m, signed)`` on ``ax`` as a bare image.

    Args:
        image: [H,W,3] RGB in [0,1]; m: [H,W] raw map (NaN shown as 0).
    """
    ax.imshow(blend(image, m, signed, alpha), interpolation="nearest")
    image_axes(ax)


def image_axes(ax: Axes) -> None:
    """No ticks, grid or spines around an image."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)


PNG_LEVEL = 1  # zlib level of the PNGs: the same pixels as PIL's default 6, encoded ~3x faster, ~15% larger


def save(fig: Figure, stem: Path, dpi: int = 200, pdf: bool = True, close: bool = True) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and (unless ``pdf`` is False: figures only for the
    screen) ``stem.pdf``; closes it unless ``close`` is False. Returns the paths. A
    layout engine's layout (``layout="constrained"``) is computed once, for the PNG,
    and the PDF reuses it."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")][:2 if pdf else 1]
    fig.savefig(paths[0], dpi=dpi, pil_kwargs={"compress_level": PNG_LEVEL})
    if pdf:
        fig.set_layout_engine("none")  # keeps the axes where the PNG's layout put them
        fig.savefig(paths[1])
    if close:
        plt.close(fig)
    return paths


def heatmap_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str],
                 method: str) -> Figure:
    """Images (top row) and their maps over them (bottom row), as one mosaic.

    Args:
        images: [N,H,W,3] RGB in [0,1].
        maps: [N,H,W] raw maps (see ``blend`` for the colour scales).
        titles: one per image.
    """
    n, h, w = maps.shape
    pad = max(2, w // 16)
    mosaic = np.ones((2 * h + pad, n * (w + pad) - pad, 3))
    for i in range(n):
        x0 = i * (w + pad)
        mosaic[:h, x0 : x0 + w] = images[i]
        mosaic[h + pad :, x0 : x0 + w] = blend(images[i], maps[i])
    fig = plt.figure(figsize=(1.5 * n, 3.4))
    ax = fig.add_axes((0, 0, 1, 0.86))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for i, t in enumerate(titles):
        ax.text(i * (w + pad) + w / 2, -2, t, ha="center", va="bottom", fontsize=7)
    fig.suptitle(method, fontsize=9, y=0.99)
    return fig


def grid_image(images: np.ndarray, maps: np.ndarray, titles: Sequence[str], method: str,
               min_cell: int = 128) -> Image.Image:
    """``heatmap_grid`` drawn straight into pixels (no figure: a run writes one per job,
    and matplotlib's layout and resampling cost ~0.2 s each): the images on top, their
    maps blended over them below (``blend``), a title over each column and ``method`` on
    top. Cells keep every pixel of the maps; smaller than ``min_cell`` pixels they are
    enlarged by a whole factor (nearest neighbour), so small inputs stay readable.

    Args:
        images: [N,H,W,3] RGB in [0,1].
        maps: [N,H,W] raw maps (see ``blend`` for the colour scales).
        titles: one per image (lines split at "\\n"; cut to the cell's width).
    """
    n, h, w = maps.shape
    k = max(1, -(-min_cell // max(h, w)))  # the whole factor that reaches min_cell
    ch, cw = h * k, w * k
    font, big = _font(max(10, cw // 14)), _font(max(12, cw // 11))
    lines = [str(t).split("\n") for t in titles]
    line_h = font.size + 3
    top = big.size + 8 + line_h * max((len(ls) for ls in lines), default=1) + 4
    pad = max(2, cw // 16)
    canvas = np.ones((top + 2 * ch + pad, n * (cw + pad) - pad, 3))
    for i in range(n):
        x0 = i * (cw + pad)
        canvas[top : top + ch, x0 : x0 + cw] = _enlarge(images[i], k)
        canvas[top + ch + pad :, x0 : x0 + cw] = _enlarge(blend(images[i], maps[i]), k)
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, 4), method, fill="black", font=big, anchor="ma")
    for i, ls in enumerate(lines):
        cx = i * (cw + pad) + cw / 2
        y = top - 4 - line_h * len(ls)
        for line in ls:
            draw.text((cx, y), _fit(draw, line, font, cw), fill="black", font=font, anchor="ma")
            y += line_h
    return img


def _enlarge(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else a.repeat(k, 0).repeat(k, 1)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    """matplotlib's DejaVu Sans (the figures' font) at ``size`` pixels."""
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text``, cut and ended with an ellipsis where it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def save_image(img: Image.Image, path: Path) -> Path:
    """Write ``img`` as a PNG (zlib ``PNG_LEVEL``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, compress_level=PNG_LEVEL)
    return path
