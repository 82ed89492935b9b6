"""Figures drawn by runs and reports (matplotlib, no display needed): the shared
publication style, one colour per method, map overlays, and saving as PNG + PDF."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin  # noqa: E402

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


def image_axes(ax: Axes) -> None:
    """No ticks, grid or spines around an image."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)


# What saving reads from ``STYLE``: TrueType fonts in PDFs (about 0.1 s more per PDF than
# matplotlib's default Type 3, for subsetting the font). Not its tight bounding box, which
# draws every figure twice: each figure's layout holds its own labels and legends.
SAVING = {k: STYLE[k] for k in ("pdf.fonttype", "ps.fonttype")}

# Embedding TrueType fonts in a PDF subsets them with fontTools, which logs every table
# it prunes at INFO: hundreds of lines per report under a command's INFO logging.
logging.getLogger("fontTools").setLevel(logging.WARNING)

PNG_LEVEL = 1  # zlib level of the PNGs: the same pixels as PIL's default 6, encoded ~3x faster, ~15% larger


def save(fig: Figure, stem: Path, dpi: float = 200, pdf: bool = True, close: bool = True,
         png_interpolation: str | None = None) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and (unless ``pdf`` is False: figures only for the
    screen) ``stem.pdf``; closes it unless ``close`` is False. Returns the paths. A
    layout engine's layout (``layout="constrained"``) is computed once, for the PNG,
    and the PDF reuses it. ``png_interpolation`` sets the interpolation of the figure's
    images in the PNG only (``"antialiased"`` where the PNG shrinks them). Inside
    ``background()`` the files are written by a child process, from the figure as it is
    now."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")][:2 if pdf else 1]
    later(_write_figure, fig, paths, dpi, png_interpolation)
    if close:
        plt.close(fig)
    return paths


def _write_figure(fig: Figure, paths: list[Path], dpi: float, png_interpolation: str | None) -> None:
    with plt.rc_context(SAVING):  # figures are drawn in ``style()`` but saved after it
        images = [im for ax in fig.axes for im in ax.get_images()]
        kept = [im.get_interpolation() for im in images]
        for im in images if png_interpolation else ():
            im.set_interpolation(png_interpolation)
        fig.savefig(paths[0], dpi=dpi, pil_kwargs={"compress_level": PNG_LEVEL})
        for im, how in zip(images, kept):
            im.set_interpolation(how)
        if len(paths) > 1:
            fig.set_layout_engine("none")  # keeps the axes where the PNG's layout put them
            fig.savefig(paths[1])


# Writing files in the background ----------------------------------------------------
# Encoding a figure (rendering, PNG compression, subsetting fonts into a PDF) is most of
# a report's time, and each file is independent of the others. Inside ``background()``
# every ``later`` call runs in a forked child process, which starts with the figure as
# it is (memory is copied on write) while this process draws the next one.

_FORKS: _Forks | None = None


def workers() -> int:
    """The CPU cores this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def background(n: int | None = None) -> Iterator[None]:
    """Inside the block ``save`` (and any ``later`` call) writes its files in a forked
    child process, at most ``n`` at a time (default: ``workers()``), while this process
    goes on; the block's end waits for them (as ``wait()`` does) and raises
    ``RuntimeError`` naming the files whose writing failed (its traceback is on stderr).
    With ``n`` below 2, or where ``fork`` is not safe (only Linux is trusted: macOS's
    system libraries are not fork-safe), everything is written in this process."""
    global _FORKS
    import sys

    n = workers() if n is None else n
    if n < 2 or _FORKS is not None or not sys.platform.startswith("linux"):
        yield
        return
    _FORKS = _Forks(n)
    try:
        yield
        _FORKS.wait()
    finally:
        forks, _FORKS = _FORKS, None
        forks.wait(check=False)


def later(fn: Callable[..., None], *args: Any) -> None:
    """``fn(*args)`` in a child process inside ``background()`` (its return value is
    lost; ``args[1]`` names its files in errors), now anywhere else."""
    if _FORKS is None:
        fn(*args)
    else:
        _FORKS.start(fn, args)


def wait() -> None:
    """Wait for every file written in the background so far (none outside
    ``background()``); raises as ``background()`` does."""
    if _FORKS is not None:
        _FORKS.wait()


class _Forks:
    """Child processes writing files: at most ``n`` running."""

    def __init__(self, n: int) -> None:
        import multiprocessing

        self.n, self.ctx = n, multiprocessing.get_context("fork")
        self.running: list[tuple[Any, str]] = []  # (process, the files it writes)
        self.failed: list[str] = []

    def start(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        while len(self.running) >= self.n:
            self._reap(block=True)
        p = self.ctx.Process(target=fn, args=args, daemon=True)
        p.start()
        what = args[1] if len(args) > 1 else fn.__name__
        self.running.append((p, ", ".join(map(str, what)) if isinstance(what, list) else str(what)))

    def _reap(self, block: bool) -> None:
        from multiprocessing.connection import wait as ready

        if block:
            ready([p.sentinel for p, _ in self.running])
        for p, what in [r for r in self.running if not r[0].is_alive()]:
            p.join()
            if p.exitcode != 0:
                self.failed.append(what)
            self.running.remove((p, what))

    def wait(self, check: bool = True) -> None:
        while self.running:
            self._reap(block=True)
        failed, self.failed = self.failed, []
        if check and failed:
            raise RuntimeError(f"writing {'; '.join(failed)} failed (the error is printed above)")


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


def mosaic_axes(pixels: np.ndarray, width: float, margins: tuple[float, float, float, float]) -> tuple[Figure, Axes]:
    """A figure showing ``pixels`` [H,W,3] with one ``imshow`` on one bare Axes,
    ``width`` inches wide, in a fixed layout: ``margins`` (left, top, right, bottom) in
    inches around it for titles and labels. Data coordinates are the mosaic's pixels
    (pixel ``(y, x)`` spans ``x-0.5 .. x+0.5``), so marks are drawn at a cell's offset
    plus their coordinate in the cell."""
    left, top, right, bottom = margins
    height = width * pixels.shape[0] / pixels.shape[1]
    fw, fh = left + width + right, bottom + height + top
    fig = plt.figure(figsize=(fw, fh))
    ax = fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))
    ax.imshow(pixels, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    return fig, ax


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
    img.save(path, compress_level=PNG_LEVEL, pnginfo=info)
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
