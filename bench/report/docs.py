"""The report as documents: Markdown (figures linked) and one self-contained HTML page
(tables, and figures embedded as data URIs: it opens offline, with no other file)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pandas as pd

from faithbench.report import truth
from faithbench.report.build import Report, Section
from faithbench.report.render import (Markup, esc, frame_rows, html_table, leaderboard,
                                      markdown_table)

CORRECTION = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}
TEST_COLS = ["key", "method", "reference", "versus", "n", "p", "p_adj", "effect", "mean_diff", "significant"]
PUB_COLS = ["method", "key", "published", "measured", "ci_low", "ci_high", "diff", "in_ci", "unverified", "source"]


def tex(text: str) -> str:
    return esc(text, "tex")


def caption(rep: Report, s: Section, markup: Markup) -> str:
    b, o = s.board, rep.options
    arrows = r"$\uparrow$/$\downarrow$" if markup == "tex" else "↑/↓"
    text = (f"{b.model} on {b.dataset}: mean [95% percentile-bootstrap CI, {o.n_resamples} "
            "resamples] (rank); bold: best; ARROWS: higher/lower is better; mean rank over the "
            "columns.")
    if len(s.win):
        text += f" Win %: share of samples with the best {o.win} (ties split)."
    return esc(text, markup).replace("ARROWS", arrows)


def _sections(rep: Report, markup: Markup) -> list[tuple[Section, dict[str, tuple]]]:
    """Per section: title -> (header, rows) of each of its tables."""
    d = rep.options.digits
    out = []
    for s in rep.sections:
        t: dict[str, tuple] = {"Leaderboard": leaderboard(s.board, s.win, d, markup)}
        if len(s.tests):
            name = (f"Paired tests (Wilcoxon signed-rank, {CORRECTION[rep.options.correction]} "
                    f"correction, alpha = {rep.options.alpha})")
            t[name] = frame_rows(s.tests[TEST_COLS], d, markup)
        if (s.reliability["n_methods"] > 1).any():
            t["Metric reliability (Krippendorff's alpha, ordinal, of method rankings over samples)"] = \
                frame_rows(s.reliability, d, markup)
        for kind, m in zip(("method rankings per sample", "per-sample values"), s.agreement):
            if informative(m):
                t[f"Agreement between metrics (Spearman of {kind})"] = frame_rows(
                    m.rename_axis("metric").reset_index(), 2, markup)
        if len(s.published):
            t["Published vs measured"] = frame_rows(s.published[PUB_COLS], d, markup)
        out.append((s, t))
    return out


def informative(m: pd.DataFrame) -> bool:
    """Whether an agreement matrix has any defined value off its diagonal."""
    import numpy as np

    v = m.to_numpy(dtype=float)
    return len(m) > 1 and bool(np.isfinite(v[~np.eye(len(m), dtype=bool)]).any())


def _intro(rep: Report) -> list[str]:
    o = rep.options
    sel = [f"experiments {', '.join(o.experiments)}"]
    if o.tags:
        sel.append("tags " + ", ".join(f"{k}={v}" for k, v in o.tags.items()))
    if o.sweep:
        sel.append(f"sweep {o.sweep}")
    n_runs = int(rep.runs["shards"].sum()) if len(rep.runs) else 0
    return [f"Store: {rep.uri}; {'; '.join(sel)}; runs: {len(rep.runs)} "
            f"(from {n_runs} MLflow runs, shards merged); "
            f"made {dt.datetime.now().isoformat(timespec='seconds')}."]


NOTES = ("Statistics: means (mean of per-class means where the metric says so) with "
         "percentile-bootstrap 95% CIs from the per-sample values; paired two-sided Wilcoxon "
         "signed-rank tests on the samples both methods scored, zero differences dropped; "
         "effect = matched-pairs rank-biserial correlation (positive: the method scores higher); "
         "p_adj: adjusted within each leaderboard. Reliability: Krippendorff's alpha with each "
         "sample ranking the methods (1 = every sample ranks them alike, 0 = chance).")


def markdown(rep: Report, out: Path) -> str:
    lines = ["# faithbench report", "", *_intro(rep), "", NOTES, ""]
    if rep.problems:
        lines += ["## Left out / warnings", ""] + [f"- {p}" for p in rep.problems] + [""]
    for s, tables in _sections(rep, "md"):
        b = s.board
        lines += [f"## {b.model} / {b.dataset}", ""]
        for i, (title, (header, rows)) in enumerate(tables.items()):
            lines += [f"### {title}", "", markdown_table(header, rows), ""]
            if i == 0:
                lines += [caption(rep, s, "md"), ""]
        for cap, paths in s.figures.items():
            rel = paths[0].relative_to(out).as_posix()
            lines += [f"![{cap}]({rel})", f"*{cap}* ([PDF]({paths[1].relative_to(out).as_posix()}))", ""]
    if rep.truth is not None:
        lines += ["## Known truth", "", truth.NOTE, ""]
        for title, table in truth.tables(rep.truth, rep.options.digits, "md").items():
            lines += [f"### {title}", "", markdown_table(*table), ""]
    lines += ["## Runs", "", markdown_table(*frame_rows(rep.runs, 0, "md")), ""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
.t{text-align:left}thead th{border-bottom:2px solid #444}
small{color:#666}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#444}
.problems{background:#fff4e5;padding:.5em 1em}p.note{font-size:13px;color:#444}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def html_page(rep: Report) -> str:
    """One page with every table and every figure inline; no link leaves the page."""
    e = lambda t: esc(t, "html")  # noqa: E731
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>faithbench report"
             f"</title><style>{CSS}</style></head><body><h1>faithbench report</h1>"]
    parts += [f"<p class=note>{e(t)}</p>" for t in (*_intro(rep), NOTES)]
    if rep.problems:
        parts.append("<div class=problems><h2>Left out / warnings</h2><ul>"
                     + "".join(f"<li>{e(p)}</li>" for p in rep.problems) + "</ul></div>")
    for s, tables in _sections(rep, "html"):
        b = s.board
        parts.append(f'<section id="{e(b.slug)}"><h2>{e(b.model)} / {e(b.dataset)}</h2>')
        for i, (title, (header, rows)) in enumerate(tables.items()):
            parts.append(f"<h3>{e(title)}</h3>" + html_table(header, rows))
            if i == 0:
                parts.append(f"<p class=note>{caption(rep, s, 'html')}</p>")
        for cap, paths in s.figures.items():
            parts.append(f'<figure><img src="{_img(paths[0])}" alt="{e(cap)}">'
                         f"<figcaption>{e(cap)}</figcaption></figure>")
        parts.append("</section>")
    if rep.truth is not None:
        parts.append(f'<section id="known-truth"><h2>Known truth</h2><p class=note>{e(truth.NOTE)}</p>')
        for title, table in truth.tables(rep.truth, rep.options.digits, "html").items():
            parts.append(f"<h3>{e(title)}</h3>" + html_table(*table))
        parts.append("</section>")
    parts.append("<h2>Runs</h2>" + html_table(*frame_rows(rep.runs, 0, "html"), cls="runs"))
    parts.append("</body></html>")
    return "\n".join(parts)
