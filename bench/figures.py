"""Figures drawn by reports and visualisations (matplotlib, no display needed): the
shared publication style, one colour per method, and saving as PNG + PDF. What is drawn
straight into pixels (map overlays, mosaics, a run's heatmap grid) is ``faithbench.pixels``."""

from __future__ import annotations

import contextlib
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

from faithbench.pixels import PNG_LEVEL  # noqa: E402

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

def save(fig: Figure, stem: Path, dpi: float = 200, pdf: bool = True, close: bool = True,
         shrink_images: bool = False) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and (unless ``pdf`` is False: figures only for the
    screen) ``stem.pdf``; closes it unless ``close`` is False. Returns the paths. A
    layout engine's layout (``layout="constrained"``) is computed once, for the PNG,
    and the PDF reuses it. With ``shrink_images`` (for a figure with a fixed layout),
    each 8-bit RGB(A) image that a file gives fewer pixels than it has is written as the
    mean over the pixels it covers (``images_at``). Inside ``background()`` the files
    are written by a worker process, from the figure as it is when ``save`` is called."""
    paths = figure_paths(stem, pdf)
    later(paths, _write_figure, fig, paths, dpi, shrink_images)
    if close:
        plt.close(fig)
    return paths


def figure_paths(stem: Path, pdf: bool = True) -> list[Path]:
    """The files ``save`` writes for ``stem`` (its folder made)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    return [stem.with_suffix(".png"), stem.with_suffix(".pdf")][:2 if pdf else 1]


def draw_and_save(make: Callable[..., Figure], args: tuple[Any, ...], stem: Path,
                  save_with: Callable[..., list[Path]] | None = None, **kwargs: Any) -> list[Path]:
    """``save(make(*args), stem, **kwargs)`` (or ``save_with``), drawn and written by a
    worker process inside ``background()``: ``make`` and ``args`` are pickled, so the
    figure is drawn there too. Returns the paths ``save`` returns."""
    paths = figure_paths(stem, kwargs.get("pdf", True))
    later(paths, _make_and_save, make, args, stem, save_with, kwargs)
    return paths


def _make_and_save(make: Callable[..., Figure], args: tuple[Any, ...], stem: Path,
                   save_with: Callable[..., list[Path]] | None, kwargs: dict[str, Any]) -> None:
    (save_with or save)(make(*args), stem, **kwargs)


def _write_figure(fig: Figure, paths: list[Path], dpi: float, shrink_images: bool) -> None:
    with plt.rc_context(SAVING):  # figures are drawn in ``style()`` but saved after it
        with images_at(fig, dpi) if shrink_images else contextlib.nullcontext():
            fig.savefig(paths[0], dpi=dpi, pil_kwargs={"compress_level": PNG_LEVEL})
        if len(paths) > 1:
            fig.set_layout_engine("none")  # keeps the axes where the PNG's layout put them
            pdf_dpi = plt.rcParams["savefig.dpi"]  # a PDF holds its images at this resolution
            with fonts_without_layout_tables(), \
                    images_at(fig, fig.dpi if pdf_dpi == "figure" else pdf_dpi) if shrink_images \
                    else contextlib.nullcontext():
                fig.savefig(paths[1])


@contextlib.contextmanager
def images_at(fig: Figure, dpi: float) -> Iterator[None]:
    """Inside the block, each 8-bit RGB(A) image that ``imshow`` drew on ``fig`` with
    more pixels than it covers at ``dpi`` (in neither direction fewer) shows instead its
    copy at that size, each pixel the mean of the area it covers (PIL's box filter),
    drawn nearest-neighbour in the same data coordinates; the axes keep their limits.
    matplotlib resampled a large gallery mosaic itself in 0.7-1.3 s per file (an RGBA
    float copy, masked arrays, its own filter), without antialiasing in the PDF; the box
    filter takes 0.06 s. Images drawn unsampled (``interpolation="none"``) are left as
    they are. The figure's layout must be final (a fixed layout, as ``mosaic_axes``)."""
    from matplotlib.image import AxesImage
    from PIL import Image

    kept = []
    try:
        for ax in fig.axes:
            for im in ax.get_images():
                data = np.asarray(im.get_array())
                box = im.get_window_extent()  # display pixels at the figure's dpi
                w, h = (round(abs(v) * dpi / fig.dpi) for v in (box.width, box.height))
                if (type(im) is not AxesImage or im.get_interpolation() == "none" or data.dtype != np.uint8
                        or data.ndim != 3 or not (0 < w <= data.shape[1] and 0 < h <= data.shape[0])
                        or (w, h) == data.shape[1::-1]):
                    continue
                kept.append((im, data, im.get_extent(), im.get_interpolation()))
                _show(im, np.asarray(Image.fromarray(data).resize((w, h), Image.Resampling.BOX)),
                      kept[-1][2], "nearest")
        yield
    finally:
        for im, data, extent, how in reversed(kept):
            _show(im, data, extent, how)


def _show(im: Any, data: np.ndarray, extent: tuple[float, ...], interpolation: str) -> None:
    """``im`` shows ``data`` over ``extent`` (data coordinates) with ``interpolation``;
    its axes keep their limits (setting an extent autoscales them)."""
    ax = im.axes
    limits = ax.get_xlim(), ax.get_ylim()
    im.set_data(data)
    im.set_extent(extent)
    ax.set_xlim(limits[0], auto=None)
    ax.set_ylim(limits[1], auto=None)
    im.set_interpolation(interpolation)


# Embedding a TrueType font in a PDF subsets it with fontTools, and about 70% of a
# figure's PDF time went to decompiling and pruning DejaVu Sans's OpenType layout tables,
# which no PDF reader uses (the writer places each glyph; matplotlib kerns from the
# original font). Dropped, every report PDF renders to the same pixels and text
# (checked with MuPDF at 200 dpi) and is written about 35% faster.
LAYOUT_TABLES = ("GSUB", "GPOS", "GDEF", "MATH")


@contextlib.contextmanager
def fonts_without_layout_tables() -> Iterator[None]:
    """Inside the block, fonts subset by fontTools (as matplotlib does to embed them in
    a PDF) leave out ``LAYOUT_TABLES``; a fontTools without the class default that
    this sets subsets as it always does."""
    from fontTools import subset

    default = getattr(subset.Options, "_drop_tables_default", None)
    if not isinstance(default, list):
        yield
        return
    subset.Options._drop_tables_default = [*default, *LAYOUT_TABLES]
    try:
        yield
    finally:
        subset.Options._drop_tables_default = default


# Figures drawn and written in the background -----------------------------------------
# Drawing and encoding figures (rendering, PNG compression, subsetting fonts into a PDF)
# is most of a report's time, and each file is independent of the others. Inside
# ``background()``, ``later`` pickles a call (milliseconds: a matplotlib figure, a
# leaderboard's frames) and hands it to a pool of worker processes, which run it while
# this process goes on to the next.

_POOL: _Workers | None = None


@contextlib.contextmanager
def background(n: int | None = None) -> Iterator[None]:
    """Inside the block ``later`` (so ``save`` and ``draw_and_save``) hands its call to
    one of ``n`` worker processes (default: ``forks.cores()``, at most 8) and returns at
    once; the block's end waits for every call (as ``wait()`` does) and raises
    ``RuntimeError`` naming the files of each call that failed, and why. With ``n``
    below 2, nested, or off Linux (the workers are forked, which macOS's system
    libraries do not allow) every call runs when it is made."""
    global _POOL
    from faithbench import forks

    n = min(8, forks.cores()) if n is None else n
    if n < 2 or _POOL is not None or not forks.can_fork():
        yield
        return
    _POOL = _Workers(n)
    try:
        yield
        _POOL.wait()
    finally:
        pool, _POOL = _POOL, None
        pool.close()


def later(files: Sequence[Path], fn: Callable[..., None], *args: Any) -> None:
    """``fn(*args)``, which writes ``files``: in a worker inside ``background()``
    (``fn`` and ``args`` pickled now, so they may change after), now anywhere else."""
    if _POOL is None:
        fn(*args)
    else:
        _POOL.submit(files, fn, args)


def wait() -> None:
    """Wait for every call handed to the workers so far (none outside ``background()``);
    raises as ``background()`` does."""
    if _POOL is not None:
        _POOL.wait()


class _Workers:
    """Worker processes running pickled calls; at most ``2 n`` calls wait for one."""

    def __init__(self, n: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forked now, while this process is small, and before ``_POOL`` is set, so in
        # the workers ``later`` runs its call (``save`` inside ``draw_and_save``); each
        # worker lives for the block
        self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                        initializer=_warm_up)
        self.n = n
        self.pending: list[tuple[Any, Sequence[Path]]] = []
        self.failed: list[str] = []
        self.pool.submit(int)  # forks every worker now (a fork pool starts them all)

    def submit(self, files: Sequence[Path], fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        import pickle

        while len(self.pending) >= 2 * self.n:  # bounded memory: the pickles wait here
            self._collect(self.pending.pop(0))
        blob = pickle.dumps((fn, args))
        self.pending.append((self.pool.submit(_run_pickled, blob), files))

    def _collect(self, item: tuple[Any, Sequence[Path]]) -> None:
        future, files = item
        try:
            future.result()
        except Exception as e:  # noqa: BLE001 - reported with its files at the end
            self.failed.append(f"{', '.join(map(str, files))}: {type(e).__name__}: {e}")

    def wait(self) -> None:
        while self.pending:
            self._collect(self.pending.pop(0))
        failed, self.failed = self.failed, []
        if failed:
            raise RuntimeError("writing figures failed: " + "; ".join(failed))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _warm_up() -> None:
    """Run by each worker as it starts, while the report's process is still reading its
    runs: what the worker's first figure would otherwise wait for (the PDF backend's
    import, the fonts' first load, layout and subsetting), 0.2-0.4 s. Best effort."""
    import io

    try:
        with style():
            fig = plt.figure(figsize=(1, 1))
            fig.text(0.5, 0.5, "0.1 [a, b]")
        with plt.rc_context(SAVING), fonts_without_layout_tables():
            fig.savefig(io.BytesIO(), format="png")
            fig.savefig(io.BytesIO(), format="pdf")
        plt.close(fig)
    except Exception:  # the figures themselves will say what is wrong
        plt.close("all")


def _run_pickled(blob: bytes) -> None:
    import pickle

    fn, args = pickle.loads(blob)
    try:
        fn(*args)
    finally:
        plt.close("all")


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
