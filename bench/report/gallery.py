"""Heatmap gallery (images x methods) and localisation examples, drawn from the
``gallery.npz`` each run logged (the same samples for every method of a dataset) and
the per-sample columns of its parquet. No map is recomputed."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from faithbench import schema
from faithbench.figures import image_axes, overlay, style
from faithbench.report.board import Board
from faithbench.report.runs import ArtifactStore

Gallery = dict[str, np.ndarray]


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


def gallery_figure(b: Board, gals: dict[str, Gallery], ids: list[str],
                   controls: set[str] | None = None) -> Figure:
    """Rows: samples; columns: the image, then each method's map over it (controls'
    titles say "control")."""
    labels = [lab for lab in b.labels if lab in gals]
    first = gals[labels[0]]
    signed = {lab: bool((gals[lab]["maps"] < 0).any()) for lab in labels}
    cell = 1.05
    with style():
        fig, axes = plt.subplots(len(ids), len(labels) + 1, squeeze=False,
                                 figsize=(cell * (len(labels) + 1), cell * len(ids) + 0.3),
                                 layout="constrained")
        for i, sid in enumerate(ids):
            k = _row(first, sid)
            img = first["images"][k] / 255.0
            axes[i, 0].imshow(img)
            image_axes(axes[i, 0])
            axes[i, 0].set_ylabel(f"{sid}\n{class_name(first, int(first['target'][k]))}", fontsize=6)
            for j, lab in enumerate(labels, start=1):
                gal = gals[lab]
                overlay(axes[i, j], img, gal["maps"][_row(gal, sid)].astype(np.float32), signed[lab])
        for j, title in enumerate(["image", *labels]):
            ctrl = controls is not None and title in controls and j > 0
            axes[0, j].set_title(f"{title}\n(control)" if ctrl else title, fontsize=7)
        fig.suptitle(f"{b.model} / {b.dataset}", fontsize=9)
    return fig


def method_gallery(gal: Gallery, label: str, n: int) -> Figure:
    """One method's maps over the first ``n`` samples of its own gallery (its view in
    the HTML page): the images on top, the maps over them below."""
    from faithbench.figures import heatmap_grid

    k = min(n, len(gal["ids"]))
    titles = [f"{gal['ids'][i]}\n{class_name(gal, int(gal['target'][i]))}" for i in range(k)]
    return heatmap_grid(gal["images"][:k] / 255.0, gal["maps"][:k].astype(np.float32), titles, label)


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


def localisation_figure(b: Board, gals: dict[str, Gallery], ids: list[str],
                        controls: set[str] | None = None) -> Figure | None:
    """Rows: methods (controls say so); columns: samples with a ground-truth box of
    their target class. Ground truth in green, predicted boxes dashed, pointing-game
    points as stars."""
    labels = [lab for lab in b.labels if lab in gals]
    first = gals[labels[0]]
    keep = [s for s in ids if (first["box_labels"][first["box_sample"] == _row(first, s)]
                               == first["target"][_row(first, s)]).any()]
    if not keep:
        return None
    marks = ["--", ":", "-."]
    with style():
        fig, axes = plt.subplots(len(labels), len(keep), squeeze=False, layout="constrained",
                                 figsize=(1.25 * len(keep) + 0.4, 1.25 * len(labels) + 0.5))
        legend = {"ground truth": Line2D([], [], color="lime", lw=1.5)}
        for i, lab in enumerate(labels):
            gal, f = gals[lab], b.frame(lab).set_index("id")
            boxes, points = _boxes(b.frame(lab)), _points(b.frame(lab), gal)
            for j, sid in enumerate(keep):
                ax, k = axes[i, j], _row(gal, sid)
                overlay(ax, first["images"][_row(first, sid)] / 255.0,
                        gal["maps"][k].astype(np.float32), bool((gal["maps"] < 0).any()), 0.45)
                t = gal["target"][k]
                for x0, y0, x1, y1 in gal["boxes"][(gal["box_sample"] == k) & (gal["box_labels"] == t)]:
                    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           ec="lime", lw=1.5))
                row = f.loc[sid] if sid in f.index else None
                for n, (p, get) in enumerate(boxes.items()):
                    bx = get(row) if row is not None else np.full(4, np.nan)
                    if np.isfinite(bx).all():
                        ax.add_patch(Rectangle((bx[0] - 0.5, bx[1] - 0.5), bx[2] - bx[0], bx[3] - bx[1],
                                               fill=False, ec="red", lw=1.2, ls=marks[n % 3]))
                    legend[f"{p} box"] = Line2D([], [], color="red", lw=1.2, ls=marks[n % 3])
                for p, get in points.items():
                    pt = get(row, k) if row is not None else np.full(2, np.nan)
                    if np.isfinite(pt).all():
                        ax.plot(pt[1], pt[0], marker="*", ms=9, mfc="white", mec="black", mew=0.7)
                    legend[f"{p} point"] = Line2D([], [], marker="*", ls="", ms=8, mfc="white", mec="black")
                if j == 0:
                    ax.set_ylabel(f"{lab}\n(control)" if controls and lab in controls else lab, fontsize=7)
                if i == 0:
                    ax.set_title(f"{sid} ({class_name(gal, int(t))})", fontsize=6)
        fig.legend(list(legend.values()), list(legend), loc="outside lower center",
                   ncol=min(4, len(legend)), frameon=False)
        fig.suptitle(f"{b.model} / {b.dataset}: localisation", fontsize=9)
    return fig


def class_name(gal: dict[str, np.ndarray], t: int) -> str:
    """The name of class ``t`` when the gallery carries class names, else ``class t``."""
    names = gal.get("class_names")
    return str(names[t]) if names is not None and 0 <= t < len(names) else f"class {t}"
