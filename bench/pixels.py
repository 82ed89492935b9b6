"""Images drawn straight into pixels, without a figure: a map blended over its image,
mosaics of cells, a run's heatmap grid, and writing pixels to PNG. A run writes its
grid with these alone (matplotlib's colour maps and font, not its figures: pyplot's
import is 0.25 s of a sweep's first job)."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

PNG_LEVEL = 1  # zlib level of the PNGs: the same pixels as PIL's default 6, encoded ~3x faster, ~15% larger
# zlib strategy of the PNGs written from pixels (heatmap grids, mosaics): run-length
# matching encodes a run's heatmap grid in 28 ms instead of 40 (photos) and 9.8 instead of
# 11.4 (shapes), the same pixels, files 4-9% smaller than the default strategy at PNG_LEVEL
# (measured on the quick preset's grids)
PIXELS_STRATEGY = zlib.Z_RLE


def blend(image: np.ndarray, heat: np.ndarray, signed: bool | None = None,
          alpha: float = 0.55) -> np.ndarray:
    """A map blended over its image in grey: [H,W,3] in [0,1] and [H,W] -> [H,W,3].

    Signed maps use a diverging colour map centred on 0 (``bwr``: red positive, blue
    negative), others ``jet`` from their min to their max; NaN shows as 0. ``signed=None``
    decides per map (any negative value); pass it to give a set of maps one convention."""
    m = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    if signed if signed is not None else bool(m.min() < 0):
        lim = np.abs(m).max() or 1.0
        rgb = matplotlib.colormaps["bwr"]((m / lim + 1) / 2)[..., :3]
    else:
        span = m.max() - m.min()
        rgb = matplotlib.colormaps["jet"]((m - m.min()) / span if span > 0 else np.zeros_like(m))[..., :3]
    grey = np.asarray(image, dtype=np.float64).mean(-1, keepdims=True)
    return (1 - alpha) * grey + alpha * rgb


def rgb8(pixels: np.ndarray) -> np.ndarray:
    """RGB in [0,1] -> uint8 (rounded), as a PNG or a PDF stores it; drawing 8-bit
    pixels also spares matplotlib a float copy of a large image at the output size."""
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def mosaic(cells: np.ndarray, pad: int) -> np.ndarray:
    """Cells laid out as one image on white, ``pad`` pixels apart.

    Args:
        cells: [R,C,H,W,3] RGB, in [0,1] or uint8.
    Returns:
        [R*(H+pad)-pad, C*(W+pad)-pad, 3] of the cells' dtype: cell (i, j) starts at
        row ``i*(H+pad)``, column ``j*(W+pad)``.
    """
    r, c, h, w, _ = cells.shape
    out = np.full((r, h + pad, c, w + pad, 3), 255 if cells.dtype == np.uint8 else 1, dtype=cells.dtype)
    out[:, :h, :, :w] = cells.transpose(0, 2, 1, 3, 4)
    return out.reshape(r * (h + pad), c * (w + pad), 3)[: r * (h + pad) - pad, : c * (w + pad) - pad]


def save_pixels(pixels: np.ndarray, path: Path, zoom: int = 1, text: dict[str, str] | None = None) -> Path:
    """Write ``pixels`` [H,W,3] (in [0,1] or uint8) straight to an 8-bit PNG (no figure), each
    pixel repeated ``zoom`` x ``zoom`` times, with ``text`` as the PNG's text chunks
    (read back by ``Image.open(path).info``). Returns ``path``."""
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    img = Image.fromarray(pixels if pixels.dtype == np.uint8 else rgb8(pixels))
    if zoom > 1:
        img = img.resize((img.width * zoom, img.height * zoom), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, compress_level=PNG_LEVEL, compress_type=PIXELS_STRATEGY, pnginfo=info)
    return path


def heatmap_grid(images: np.ndarray, maps: np.ndarray, titles: Sequence[str], method: str,
                 min_cell: int = 128) -> np.ndarray:
    """A run's heatmap grid, drawn straight into pixels (a run writes one per job; a
    matplotlib figure cost ~0.2 s each): the images on top, their maps blended over them
    below (``blend``), a title over each column and ``method`` on top. Cells keep every
    pixel of the maps; below ``min_cell`` pixels they are enlarged by a whole factor
    (nearest neighbour), so small inputs stay readable.

    Args:
        images: [N,H,W,3] RGB in [0,1].
        maps: [N,H,W] raw maps (see ``blend`` for the colour scales).
        titles: one per image (lines split at "\\n"; cut to the cell's width).
    Returns:
        [H',W',3] uint8 (``save_pixels`` writes it).
    """
    n, h, w = maps.shape
    k = max(1, -(-min_cell // max(h, w)))  # the whole factor that reaches min_cell
    cw = w * k
    cells = np.stack([[rgb8(im) for im in images], [rgb8(blend(im, m)) for im, m in zip(images, maps)]])
    pad = max(2, cw // 16)
    grid = mosaic(cells.repeat(k, 2).repeat(k, 3), pad)
    font, big = _font(max(10, cw // 14)), _font(max(12, cw // 11))
    lines = [str(t).split("\n") for t in titles]
    line_h = font.size + 3
    top = big.size + 8 + line_h * max((len(ls) for ls in lines), default=1) + 4
    img = Image.new("RGB", (grid.shape[1], top + grid.shape[0]), "white")
    img.paste(Image.fromarray(grid), (0, top))
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, 4), method, fill="black", font=big, anchor="ma")
    for i, ls in enumerate(lines):
        y = top - 4 - line_h * len(ls)
        for line in ls:
            draw.text((i * (cw + pad) + cw / 2, y), _fit(draw, line, font, cw), fill="black",
                      font=font, anchor="ma")
            y += line_h
    return np.asarray(img)


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
