"""Heatmap gallery (images x methods) and localisation examples, drawn from the
``gallery.npz`` each run logged (the same samples for every method of a dataset) and
the per-sample columns of its parquet. No map is recomputed.

Each figure is one mosaic image (``pixels.mosaic``) on one Axes in a fixed layout,
with its titles, labels and marks drawn at the cells' offsets: one Axes per cell made
the report's galleries its slowest part."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from faithbench import schema
from faithbench.figures import mosaic_axes, save, style
from faithbench.pixels import blend, mosaic, rgb8, save_pixels
from faithbench.report.board import Board
from faithbench.report.runs import ArtifactStore

Gallery = dict[str, np.ndarray]
TITLES = "faithbench:titles"  # the PNG text chunk of a method's view: its samples' [id, class name]
STAR = {"ls": "", "marker": "*", "ms": 9, "mfc": "white", "mec": "black", "mew": 0.7}  # a pointing-game point
VIEW = 128  # pixels per cell on screen: a method's view, the gallery and localisation PNGs
GALLERY_CELL, LOCALISATION_CELL = 1.05, 1.2  # inches per cell (and its padding) in those figures


def load_gallery(b: Board, store: ArtifactStore) -> dict[str, Gallery]:
    """label -> the gallery of its run (shards' galleries concatenated)."""
    out: dict[str, Gallery] = {}
    for g in b.groups:
        parts = [np.load(p) for r in g.runs if (p := store.get(r, "gallery.npz")) is not None]
        parts = [p for p in parts if p["images"].shape[1:] == parts[0]["images"].shape[1:]]
        if not parts or "boxes" not in parts[0].files:
            continue
        gal: dict[str, Any] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files
                               if k not in ("box_sample",)}
        offs = np.cumsum([0] + [len(p["ids"]) for p in parts[:-1]])
        gal["box_sample"] = np.concatenate([p["box_sample"] + o for p, o in zip(parts, offs)])
        out[g.label] = gal
    return out


def common_ids(b: Board, gals: dict[str, Gallery], n: int) -> list[str]:
    """Up to ``n`` sample ids in every method's gallery, in dataset order."""
    if not gals:
        return []
    ids = set.intersection(*(set(g["ids"].tolist()) for g in gals.values()))
    order = {i: k for k, i in enumerate(b.frame(next(iter(gals)))["id"])}
    return sorted(ids, key=lambda i: order.get(i, len(order)))[:n]


def _row(gal: Gallery, sid: str) -> int:
    return int(np.flatnonzero(gal["ids"] == sid)[0])


def _pad(h: int, w: int) -> int:
    """White pixels between cells: about 4% of a cell."""
    return max(2, round(0.04 * max(h, w)))


def _wrap(name: str, width: int = 16) -> str:
    """``name`` broken after underscores into lines of about ``width`` characters, so
    a long method name stays over its own column."""
    lines = [""]
    for part in re.split(r"(?<=_)", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _margin(texts: list[str], fontsize: float, extra: float) -> float:
    """Inches for the most lines of ``texts`` at ``fontsize`` (1.25 line spacing),
    plus ``extra``."""
    return extra + max(t.count("\n") + 1 for t in texts) * 1.25 * fontsize / 72


def _title_columns(ax: Axes, titles: list[str], w: int, pad: int, fontsize: float) -> None:
    """One title above each column of cells ``w`` pixels wide."""
    for j, t in enumerate(titles):
        ax.annotate(t, (j * (w + pad) + (w - 1) / 2, -0.5), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=fontsize, annotation_clip=False)


def _label_rows(ax: Axes, labels: list[str], h: int, pad: int, fontsize: float) -> None:
    """One label left of each row of cells ``h`` pixels high, read bottom to top as a
    y-axis label is."""
    for i, t in enumerate(labels):
        ax.annotate(t, (-0.5, i * (h + pad) + (h - 1) / 2), xytext=(-2, 0), textcoords="offset points",
                    rotation=90, rotation_mode="anchor", ha="center", va="bottom", fontsize=fontsize,
                    annotation_clip=False)


def gallery_figure(b: Board, gals: dict[str, Gallery], ids: list[str],
                   controls: set[str] | None = None) -> Figure:
    """Rows: samples; columns: the image, then each method's map over it (controls'
    titles say "control"). Each map cell is ``blend(image, map, signed)`` in 8 bits,
    ``signed`` per method (any negative value in its gallery)."""
    labels = [lab for lab in b.labels if lab in gals]
    first = gals[labels[0]]
    signed = {lab: bool((gals[lab]["maps"] < 0).any()) for lab in labels}
    rows = []
    for sid in ids:
        img = first["images"][_row(first, sid)]
        rows.append([img] + [rgb8(blend(img / 255.0, gals[lab]["maps"][_row(gals[lab], sid)].astype(np.float32),
                                        signed[lab])) for lab in labels])
    _, h, w, _ = first["images"].shape
    pad = _pad(h, w)
    cell = GALLERY_CELL
    titles = ["image", *(_wrap(lab) + ("\n(control)" if controls is not None and lab in controls else "")
                         for lab in labels)]
    names = [f"{sid}\n{class_name(first, int(first['target'][_row(first, sid)]))}" for sid in ids]
    with style():
        pixels = mosaic(np.asarray(rows), pad)
        fig, ax = mosaic_axes(pixels, cell * pixels.shape[1] / (w + pad),
                              (_margin(names, 6, 0.1), _margin(titles, 7, 0.25), 0.05, 0.05))
        _title_columns(ax, titles, w, pad, 7)
        _label_rows(ax, names, h, pad, 6)
        fig.suptitle(f"{b.model} / {b.dataset}", fontsize=9, va="top", y=1 - 0.04 / fig.get_figheight())
    return fig


def method_gallery(gal: Gallery, n: int, stem: Path) -> Path:
    """One method's maps over the first ``n`` samples of its own gallery, for its view
    in the HTML page: the images on top, the maps over them below (``blend``, the sign
    decided per map), written straight to ``stem.png`` with cells of about ``VIEW``
    pixels: small images enlarged by whole pixels, large ones shrunk by a whole factor
    (the mean of each block, image and map, before blending). The samples' ids and
    class names travel in the PNG's ``TITLES`` text chunk (JSON); the page shows them
    as text under the image. Returns the path."""
    k = min(n, len(gal["ids"]))
    images, maps = gal["images"][:k].astype(np.float32) / 255, gal["maps"][:k].astype(np.float32)
    signed = (maps < 0).any((1, 2))  # decided on the full maps
    maps = np.nan_to_num(maps)  # NaN shows as 0, also in a block's mean
    side = max(maps.shape[1:])
    if side >= 1.5 * VIEW:
        images, maps = _shrink(images, round(side / VIEW)), _shrink(maps, round(side / VIEW))
    cells = np.stack([images, [blend(img, m, s) for img, m, s in zip(images, maps, signed)]])
    titles = [[str(gal["ids"][i]), class_name(gal, int(gal["target"][i]))] for i in range(k)]
    return save_pixels(mosaic(cells, max(2, images.shape[2] // 16)), stem.with_suffix(".png"),
                       max(1, round(VIEW / side)), {TITLES: json.dumps(titles)})


def save_mosaic(fig: Figure, stem: Path, cell: float) -> list[Path]:
    """Save a gallery or localisation figure (``cell`` inches per cell) as a PNG for the
    screen, at the resolution that gives cells of about ``VIEW`` pixels (at 200 dpi the
    photos' PNGs were 7-9 MB, the page embedding them 42 MB), and as a PDF (the image
    at its 100 dpi); where that shrinks the mosaic, each file's pixel is the mean of
    the mosaic's pixels it covers (``figures.images_at``)."""
    return save(fig, stem, dpi=VIEW / cell, shrink_images=True)


def _shrink(a: np.ndarray, f: int) -> np.ndarray:
    """[N,H,W,...] -> [N,H//f,W//f,...]: the mean of each f x f block."""
    h, w = a.shape[1] // f * f, a.shape[2] // f * f
    return sum(a[:, i:h:f, j:w:f] for i in range(f) for j in range(f)) / f**2


def view_titles(path: Path) -> list[list[str]]:
    """The [id, class name] of each column of a view written by ``method_gallery``
    (none for other images)."""
    from PIL import Image

    with Image.open(path) as img:
        return json.loads(img.info.get(TITLES, "[]"))


def _boxes(f: pd.DataFrame) -> dict[str, Any]:
    """Predicted boxes per metric in a frame: ``<p>_box`` [4] vectors or the four
    scalar columns ``<p>_x0/_y0/_x1/_y1`` (xyxy, model-input pixels)."""
    out = {}
    for c in f.columns:
        v = schema.vector_prefix(c, schema.BOX)
        if v is not None and f[c].dtype == object:
            out[v] = lambda r, c=c: np.asarray(r[c], dtype=float)
        p = schema.box_prefix(c)
        if p is not None and all(k in f.columns for k in schema.box_keys(p)):
            out[p] = lambda r, p=p: np.array([r[k] for k in schema.box_keys(p)], float)
    return out


def _points(f: pd.DataFrame, gal: Gallery) -> dict[str, Any]:
    """Points per metric, as (y, x) in model-input pixels: ``<p>_point`` [2] vectors,
    or ``<p>_y``/``<p>_x`` in original pixels when the gallery has ``scale`` and
    ``offset`` [N,2] to map them back (input = orig / scale - offset)."""
    out = {}
    for c in f.columns:
        v = schema.vector_prefix(c, schema.POINT)
        if v is not None and f[c].dtype == object:
            out[v] = lambda r, k, c=c: np.asarray(r[c], dtype=float)
        p = schema.point_prefix(c)
        if p is not None and schema.point_keys(p)[1] in f.columns and "scale" in gal and "offset" in gal:
            out[p] = lambda r, k, p=p: (np.array([r[col] for col in schema.point_keys(p)], float)
                                        / gal["scale"][k] - gal["offset"][k])
    return out


def boxed_ids(b: Board, gals: dict[str, Gallery], ids: list[str]) -> list[str]:
    """The samples of ``ids`` with a ground-truth box of their target class (those the
    localisation figure shows), read from the gallery of the board's first method."""
    first = gals[next(lab for lab in b.labels if lab in gals)]
    return [s for s in ids if (first["box_labels"][first["box_sample"] == _row(first, s)]
                               == first["target"][_row(first, s)]).any()]


def localisation_figure(b: Board, gals: dict[str, Gallery], ids: list[str],
                        controls: set[str] | None = None) -> Figure | None:
    """Rows: methods (controls say so); columns: samples with a ground-truth box of
    their target class. Ground truth in green, predicted boxes dashed, pointing-game
    points as stars, each at its cell's offset in the mosaic."""
    labels = [lab for lab in b.labels if lab in gals]
    first = gals[labels[0]]
    keep = boxed_ids(b, gals, ids)
    if not keep:
        return None
    _, h, w, _ = first["images"].shape
    pad = _pad(h, w)
    marks = ["--", ":", "-."]
    legend = {"ground truth": Line2D([], [], color="lime", lw=1.5)}
    cells, drawn = [], []  # drawn: (row, column, box xyxy or point (x, y) in the cell, style)
    for i, lab in enumerate(labels):
        gal, f = gals[lab], b.frame(lab).set_index("id")
        signed = bool((gal["maps"] < 0).any())
        pred, points = _boxes(b.frame(lab)), _points(b.frame(lab), gal)
        cells.append([])
        for j, sid in enumerate(keep):
            k = _row(gal, sid)
            cells[-1].append(rgb8(blend(first["images"][_row(first, sid)] / 255.0,
                                        gal["maps"][k].astype(np.float32), signed, 0.45)))
            t = gal["target"][k]
            drawn += [(i, j, gt, {"ec": "lime", "lw": 1.5})
                      for gt in gal["boxes"][(gal["box_sample"] == k) & (gal["box_labels"] == t)]]
            row = f.loc[sid] if sid in f.index else None
            for n, (p, get) in enumerate(pred.items()):
                bx = get(row) if row is not None else np.full(4, np.nan)
                if np.isfinite(bx).all():
                    drawn.append((i, j, bx, {"ec": "red", "lw": 1.2, "ls": marks[n % 3]}))
                legend[f"{p} box"] = Line2D([], [], color="red", lw=1.2, ls=marks[n % 3])
            for p, get in points.items():
                pt = get(row, k) if row is not None else np.full(2, np.nan)
                if np.isfinite(pt).all():
                    drawn.append((i, j, pt[::-1], STAR))
                legend[f"{p} point"] = Line2D([], [], marker="*", ls="", ms=8, mfc="white", mec="black")
    rows = [_wrap(lab, 20) + ("\n(control)" if controls and lab in controls else "") for lab in labels]
    titles = [f"{sid} ({class_name(first, int(first['target'][_row(first, sid)]))})" for sid in keep]
    bottom = 0.1 + 0.17 * -(-len(legend) // 4)  # the legend's rows of four
    with style():
        pixels = mosaic(np.asarray(cells), pad)
        fig, ax = mosaic_axes(pixels, LOCALISATION_CELL * pixels.shape[1] / (w + pad),
                              (_margin(rows, 7, 0.12), _margin(titles, 6, 0.25), 0.05, bottom))
        for i, j, xy, kw in drawn:
            x0, y0 = j * (w + pad) - 0.5, i * (h + pad) - 0.5  # the cell's corner: boxes on the pixels' edges
            if len(xy) == 4:
                art = ax.add_patch(Rectangle((x0 + xy[0], y0 + xy[1]), xy[2] - xy[0], xy[3] - xy[1], fill=False, **kw))
            else:  # a point on a pixel's centre
                (art,) = ax.plot(x0 + 0.5 + xy[0], y0 + 0.5 + xy[1], **kw)
            art.set_clip_path(Rectangle((x0, y0), w, h, transform=ax.transData))  # in its cell, as in its own axes
        _label_rows(ax, rows, h, pad, 7)
        _title_columns(ax, titles, w, pad, 6)
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(4, len(legend)),
                   frameon=False)
        fig.suptitle(f"{b.model} / {b.dataset}: localisation", fontsize=9, va="top",
                     y=1 - 0.04 / fig.get_figheight())
    return fig


def class_name(gal: dict[str, np.ndarray], t: int) -> str:
    """The name of class ``t`` when the gallery carries class names, else ``class t``."""
    names = gal.get("class_names")
    return str(names[t]) if names is not None and 0 <= t < len(names) else f"class {t}"
