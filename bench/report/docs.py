"""The report as Markdown (figures linked), and the tables and notes that the
Markdown and the HTML page (``webpage``) share."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from faithbench.report import page, truth
from faithbench.report.build import Report, Section
from faithbench.report.render import (Markup, esc, frame_rows, leaderboard,
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
        t: dict[str, tuple] = {"Leaderboard": leaderboard(s.board, s.win, d, markup, s.controls, s.below)}
        if s.ranks:
            t[RANKS] = frame_rows(pd.DataFrame([r.row(s.controls) for r in s.ranks]), d, markup)
            for r in s.ranks:
                t[f"{SIGNIFICANCE}: {r.key}"] = page.matrix_rows(r, s.controls)
        if len(s.tests):
            name = (f"Paired tests (Wilcoxon signed-rank, {CORRECTION[rep.options.correction]} "
                    f"correction, alpha = {rep.options.alpha})")
            t[name] = frame_rows(marked(s.tests[TEST_COLS], s.controls, ["method", "versus"]), d, markup)
        if (s.reliability["n_methods"] > 1).any():
            t["Metric reliability (Krippendorff's alpha, ordinal, of method rankings over samples)"] = \
                frame_rows(s.reliability, d, markup)
        for kind, m in zip(("method rankings per sample", "per-sample values"), s.agreement):
            if informative(m):
                t[f"Agreement between metrics (Spearman of {kind})"] = frame_rows(
                    m.rename_axis("metric").reset_index(), 2, markup)
        if len(s.published):
            t["Published vs measured"] = frame_rows(marked(s.published[PUB_COLS], s.controls, ["method"]), d, markup)
        out.append((s, t))
    return out


RANKS = "Ranks over samples (Friedman test, Nemenyi critical difference)"
SIGNIFICANCE = "Significance"
MATRIX_NOTE = ("Each metric's methods x methods matrix: the matched-pairs rank-biserial effect of "
               "the row method against the column method, oriented so that positive (green) means "
               "the row method is better by the metric's direction; * = significant after CORR "
               "correction of the k(k-1)/2 paired Wilcoxon tests of that metric at alpha = ALPHA. "
               "Methods in mean-rank order; (c) / (control): a control method.")


def matrix_note(rep: Report) -> str:
    return (MATRIX_NOTE.replace("CORR", CORRECTION[rep.options.correction])
            .replace("ALPHA", f"{rep.options.alpha:g}"))


def marked(df: pd.DataFrame, controls: set[str], columns: list[str]) -> pd.DataFrame:
    """A copy of ``df`` whose method-label ``columns`` say "(control)" for controls."""
    out = df.copy()
    for c in columns:
        out[c] = [f"{v} (control)" if v in controls else v for v in out[c]]
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


ACROSS = ("Ranks across (model, dataset) pairs and metrics (Friedman test, Nemenyi critical "
          "difference): each leaderboard mean is a block")
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
            if title.startswith(SIGNIFICANCE):
                lines += [matrix_note(rep), ""]
        figs = {**s.figures, **{f"Critical-difference diagram: {k}": p for k, p in s.cd_figures.items()}}
        for cap, paths in figs.items():
            rel = paths[0].relative_to(out).as_posix()
            lines += [f"![{cap}]({rel})", f"*{cap}* ([PDF]({paths[1].relative_to(out).as_posix()}))", ""]
    if rep.across:
        lines += [f"## {ACROSS}", "", markdown_table(*frame_rows(pd.DataFrame([t.row() for t in rep.across]),
                                                                rep.options.digits, "md")), ""]
        for k, paths in rep.cd_figures.items():
            lines += [f"![critical-difference diagram: {k}]({paths[0].relative_to(out).as_posix()})", ""]
    if rep.truth is not None:
        lines += ["## Known truth", "", truth.NOTE, ""]
        for title, table in truth.tables(rep.truth, rep.options.digits, "md").items():
            lines += [f"### {title}", "", markdown_table(*table), ""]
    lines += ["## Runs", "", markdown_table(*frame_rows(rep.runs, 0, "md")), ""]
    return "\n".join(lines)
