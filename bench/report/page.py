"""The explorable parts of the HTML page: a sortable leaderboard, the significance
matrices, the filter by model / dataset / metric, and each method's own view. Plain
HTML with one inline script (no library, no network): it works from ``file://``.

Filtering is generic: any element with ``data-model``, ``data-dataset`` or
``data-metric`` is hidden when the filter names another value. A method's view is a
``div.view`` shown by CSS ``:target`` when its link (the method's name) is followed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from faithbench.report.board import Board
from faithbench.report.ranks import RankTest
from faithbench.report.render import cell_records, esc, num

CSS = """table.sortable th{cursor:pointer;user-select:none}th[data-dir=asc]::after{content:" ▲"}
th[data-dir=desc]::after{content:" ▼"}.view{display:none;border:2px solid #888;padding:.5em 1em;margin:1em 0}
.view:target{display:block}.control{color:#777;font-style:italic}.flag{color:#b00;font-weight:bold}
.filters{position:sticky;top:0;background:#fafafa;padding:.4em;border-bottom:1px solid #ccc;z-index:1}
table.matrix td{text-align:center;min-width:3em}.matrices{display:flex;flex-wrap:wrap;gap:1.5em}
details{margin:.5em 0}summary{cursor:pointer;color:#345}td.beats{white-space:normal;min-width:12em}"""

JS = """<script>
(function () {
  function key(tr, j) {
    const c = tr.cells[j], v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
    const x = parseFloat(v);
    return isNaN(x) ? [1, v] : [0, x];
  }
  document.querySelectorAll('table.sortable thead th').forEach(function (th, j) {
    th.addEventListener('click', function () {
      const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc', s = dir === 'asc' ? 1 : -1;
      th.parentNode.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      const body = th.closest('table').tBodies[0];
      [...body.rows].map(function (r, i) { return [key(r, j), i, r]; }).sort(function (a, b) {
        if (a[0][0] !== b[0][0]) return a[0][0] - b[0][0];  // numbers first, text and blanks last
        if (a[0][1] < b[0][1]) return -s;
        if (a[0][1] > b[0][1]) return s;
        return a[1] - b[1];
      }).forEach(function (t) { body.appendChild(t[2]); });
    });
  });
  function filter() {
    const want = {};
    document.querySelectorAll('select.filter').forEach(function (s) { want[s.name] = s.value; });
    document.querySelectorAll('[data-model],[data-dataset],[data-metric]').forEach(function (el) {
      const hide = Object.keys(want).some(function (k) {
        return want[k] && el.dataset[k] !== undefined && el.dataset[k] !== want[k];
      });
      el.style.display = hide ? 'none' : '';
    });
  }
  document.querySelectorAll('select.filter').forEach(function (s) { s.addEventListener('change', filter); });
})();
</script>"""


def filters(boards: list[Board]) -> str:
    """The filter bar: one select per facet, its choices from the report's boards."""
    facets = {"model": sorted({b.model for b in boards}), "dataset": sorted({b.dataset for b in boards}),
              "metric": sorted({k for b in boards for k in b.shown})}
    out = []
    for name, values in facets.items():
        opts = "".join(f'<option value="{esc(v, "html")}">{esc(v, "html")}</option>' for v in values)
        out.append(f'<label>{name} <select class="filter" name="{name}"><option value="">all</option>'
                   f"{opts}</select></label>")
    return '<div class="filters">Filter: ' + " ".join(out) + "</div>"


def view_id(b: Board, label: str) -> str:
    return f"view-{b.slug}-{b.labels.index(label)}"


def board(b: Board, header: list[str], rows: list[list[str]], win: pd.Series, controls: set[str],
          below: dict[str, list[str]]) -> str:
    """The leaderboard as a sortable table: each cell carries its number (``data-v``),
    metric columns their key (``data-metric``), rows their model, dataset and method;
    the method's name links to its view; controls and flagged cells are marked."""
    e = lambda t: esc(str(t), "html")  # noqa: E731
    cells = cell_records(b)
    where = f'data-model="{e(b.model)}" data-dataset="{e(b.dataset)}"'
    cols = ["method", "n", *b.shown] + (["win"] if len(win) else []) + (["beats"] if controls else []) + ["rank"]
    head = "".join(f'<th data-metric="{e(c)}">{h}</th>' if c in b.shown else f"<th>{h}</th>"
                   for c, h in zip(cols, header))
    body = []
    for r, line in zip(b.rows.to_dict("records"), rows):
        lab = r["label"]
        tds = []
        for c, text in zip(cols, line):
            if c == "method":
                cls = ' class="t control"' if lab in controls else ' class="t"'
                tag = " <small>(control)</small>" if lab in controls else ""
                tds.append(f'<td{cls} data-v="{e(lab)}"><a href="#{view_id(b, lab)}">{text}</a>{tag}</td>')
                continue
            v = {"n": r["n_samples"], "rank": r["mean_rank"], "win": win.get(lab, np.nan),
                 "beats": text}.get(c)
            attrs = ""
            if c in b.shown:
                v = cells[(lab, c)]["mean"] if (lab, c) in cells else np.nan
                attrs = f' data-metric="{e(c)}"'
                if c in below.get(lab, []):
                    attrs += ' class="flag" title="does not beat the controls on this metric"'
            if c == "beats":
                attrs = ' class="t beats"'
            sv = e(v) if isinstance(v, str) else ("" if v is None or math.isnan(float(v)) else repr(float(v)))
            tds.append(f'<td{attrs} data-v="{sv}">{text}</td>')
        body.append(f'<tr {where} data-method="{e(lab)}">' + "".join(tds) + "</tr>")
    return (f'<table class="board sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _colour(effect: float) -> str:
    """Background for an effect in [-1, 1]: green when the row method is better,
    red when worse, white at 0."""
    if not np.isfinite(effect):
        return "#eee"
    far = (26, 152, 80) if effect > 0 else (215, 48, 39)
    a = min(1.0, abs(effect)) * 0.8
    return "#%02x%02x%02x" % tuple(round(255 + (f - 255) * a) for f in far)


def matrix(t: RankTest, controls: set[str], digits: int = 2) -> str:
    """Methods x methods of one metric: rank-biserial effect (row vs column, positive:
    the row method is better by the metric's direction) as colour and number, ``*``
    where the corrected Wilcoxon test is significant; methods in mean-rank order."""
    e = lambda x: esc(str(x), "html")  # noqa: E731
    eff, sig, p = (t.matrix(c).to_numpy() for c in ("effect", "significant", "p_adj"))
    name = lambda lab: f'<span class="control">{e(lab)} (c)</span>' if lab in controls else e(lab)  # noqa: E731
    # columns numbered in mean-rank order, so that 20 methods fit the page's width
    head = "<th></th>" + "".join(f'<th title="{e(c)}">{j}</th>' for j, c in enumerate(t.labels, 1))
    rows = []
    for i, a in enumerate(t.labels):
        tds = []
        for j, c in enumerate(t.labels):
            if a == c:
                tds.append('<td style="background:#ddd"></td>')
                continue
            x, s = float(eff[i, j]), bool(sig[i, j])  # by position: .loc per cell was slow
            tds.append(f'<td style="background:{_colour(x)}" title="p_adj = {float(p[i, j]):.3g}">'
                       f"{num(round(x, digits) + 0.0, digits)}{'*' if s else ''}</td>")  # no "-0.00"
        rows.append(f'<tr><th class="t">{i + 1}. {name(a)}</th>' + "".join(tds) + "</tr>")
    return (f'<div data-metric="{e(t.key)}"><h4>{e(t.key)}</h4><table class="matrix"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def matrix_rows(t: RankTest, controls: set[str], digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """The same matrix as (header, rows) of text, for Markdown."""
    eff, sig = t.matrix("effect").to_numpy(), t.matrix("significant").to_numpy()
    name = lambda lab: f"{lab} (control)" if lab in controls else lab  # noqa: E731
    rows = [[name(a)] + ["" if a == c else num(round(float(eff[i, j]), digits) + 0.0, digits)
                         + ("*" if sig[i, j] else "")
                         for j, c in enumerate(t.labels)] for i, a in enumerate(t.labels)]
    return ["effect: row vs column", *[name(c) for c in t.labels]], rows


def view(b: Board, label: str, line: list[str], header: list[str], images: list[tuple[str, str, str]],
         controls: set[str]) -> str:
    """One method's view: its leaderboard row, its curves among the others' and its
    maps over its gallery samples (``images``: (data URI, what it shows, its caption's
    HTML or ""))."""
    e = lambda x: esc(str(x), "html")  # noqa: E731
    kind = " (control: does not look at the model)" if label in controls else ""
    row = ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in header[1:]) + "</tr></thead><tbody><tr>"
           + "".join(f"<td>{c}</td>" for c in line[1:]) + "</tr></tbody></table>")
    imgs = "".join(f'<figure><img src="{src}" alt="{e(label)}: {what}">{cap}</figure>'
                   for src, what, cap in images)
    return (f'<div class="view" id="{view_id(b, label)}" data-method="{e(label)}"><h3>{e(label)}{kind} '
            f'<small>{e(b.model)} / {e(b.dataset)}</small></h3><p><a href="#{e(b.slug)}">close</a></p>'
            f"{row}{imgs or '<p>no figures (run with figures, or no curves and no gallery)</p>'}</div>")
