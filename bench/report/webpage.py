"""The report as one self-contained HTML page: every table, figures embedded as data
URIs, a filter bar, sortable leaderboards, significance matrices, folded test tables and
each method's own view; no link leaves the page, so it opens offline from ``file://``."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from faithbench.report import page, truth
from faithbench.report.build import Report
from faithbench.report.docs import (ACROSS, NOTES, RANKS, SIGNIFICANCE, _intro, _sections, caption,
                                    matrix_note)
from faithbench.report.gallery import view_titles
from faithbench.report.render import esc, frame_rows, html_table

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
.t{text-align:left}thead th{border-bottom:2px solid #444}
small{color:#666}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#444}
.problems{background:#fff4e5;padding:.5em 1em}p.note{font-size:13px;color:#444}
figcaption.samples{display:flex;width:0;min-width:100%}
figcaption.samples span{flex:1 1 0;min-width:0;overflow:hidden;text-overflow:ellipsis;text-align:center}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _figure(path: Path, cap: str, metric: str | None = None) -> str:
    attr = f' data-metric="{esc(metric, "html")}"' if metric else ""
    return (f'<figure{attr}><img src="{_img(path)}" alt="{esc(cap, "html")}">'
            f"<figcaption>{esc(cap, 'html')}</figcaption></figure>")


def _samples(path: Path) -> str:
    """The caption under a method's gallery view: each column's sample id and class
    name (``gallery.view_titles``), as text; "" for other images."""
    cap = "".join(f"<span>{esc(sid, 'html')}<br>{esc(name, 'html')}</span>" for sid, name in view_titles(path))
    return f"<figcaption class=samples>{cap}</figcaption>" if cap else ""


def html_page(rep: Report) -> str:
    """One page with every table and every figure inline; no link leaves the page."""
    e = lambda t: esc(t, "html")  # noqa: E731
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>faithbench report"
             f"</title><style>{CSS}\n{page.CSS}</style></head><body><h1>faithbench report</h1>"]
    parts += [f"<p class=note>{e(t)}</p>" for t in (*_intro(rep), NOTES)]
    parts.append(page.filters([s.board for s in rep.sections]))
    if rep.problems:
        parts.append("<div class=problems><h2>Left out / warnings</h2><ul>"
                     + "".join(f"<li>{e(p)}</li>" for p in rep.problems) + "</ul></div>")
    if rep.across:
        parts.append(f'<section id="across"><h2>{e(ACROSS)}</h2>'
                     + html_table(*frame_rows(pd.DataFrame([t.row() for t in rep.across]), rep.options.digits, "html"))
                     + "".join(_figure(p[0], f"critical-difference diagram: {k}", k if k != "all" else None)
                               for k, p in rep.cd_figures.items()) + "</section>")
    for s, tables in _sections(rep, "html"):
        b = s.board
        parts.append(f'<section id="{e(b.slug)}" data-model="{e(b.model)}" data-dataset="{e(b.dataset)}">'
                     f"<h2>{e(b.model)} / {e(b.dataset)}</h2>")
        lb_header, lb_rows = tables.pop("Leaderboard")
        parts.append("<h3>Leaderboard</h3>" + page.board(b, lb_header, lb_rows, s.win, s.controls, s.below))
        parts.append(f"<p class=note>{caption(rep, s, 'html')} Click a column to sort, a method for "
                     "its curves and maps.</p>")
        mats = [page.matrix(t, s.controls) for t in s.ranks]
        if mats:
            parts.append(f"<h3>Significance matrices</h3><p class=note>{e(matrix_note(rep))}</p>"
                         f"<div class=matrices>{''.join(mats)}</div>")
        for title, (header, rows) in tables.items():
            if title.startswith(SIGNIFICANCE):
                continue
            keyed = title == RANKS or title.startswith("Paired tests")  # rows carry their metric
            table = html_table(header, rows, metrics=[r[0] for r in rows] if keyed else None)
            if title.startswith("Paired tests"):  # the long list: folded, and in full in tests.csv
                parts.append(f"<details><summary>{e(title)}: {len(rows)} tests (also tests.csv)"
                             f"</summary>{table}</details>")
            else:
                parts.append(f"<h3>{e(title)}</h3>" + table)
            if title == RANKS:
                parts += [_figure(p[0], f"critical-difference diagram: {k}", k) for k, p in s.cd_figures.items()]
        for cap, paths in s.figures.items():
            parts.append(_figure(paths[0], cap))
        lines = dict(zip(b.rows["label"], lb_rows))
        for lab in b.labels:
            imgs = [(_img(p), p.stem.rsplit("_", 1)[-1], _samples(p)) for p in s.views.get(lab, [])]
            parts.append(page.view(b, lab, lines[lab], lb_header, imgs, s.controls))
        parts.append("</section>")
    if rep.truth is not None:
        parts.append(f'<section id="known-truth"><h2>Known truth</h2><p class=note>{e(truth.NOTE)}</p>')
        for title, table in truth.tables(rep.truth, rep.options.digits, "html").items():
            parts.append(f"<h3>{e(title)}</h3>" + html_table(*table))
        parts.append("</section>")
    parts.append("<h2>Runs</h2>" + html_table(*frame_rows(rep.runs, 0, "html"), cls="runs"))
    parts.append(page.JS + "</body></html>")
    return "\n".join(parts)
