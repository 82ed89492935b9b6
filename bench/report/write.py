"""Writing a built report: figures (PNG + PDF), Markdown, LaTeX, CSV, one HTML page,
and a report run in MLflow holding all of them."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from faithbench.figures import draw_and_save, later, method_colors, wait
from faithbench.report import docs, webpage
from faithbench.report.build import Report, Section
from faithbench.report.cd import cd_figure
from faithbench.report.board import Board
from faithbench.report.gallery import (GALLERY_CELL, LOCALISATION_CELL, boxed_ids, common_ids,
                                       gallery_figure, load_gallery, localisation_figure, method_gallery,
                                       save_mosaic)
from faithbench.report.curve_views import CurveViews
from faithbench.report.plots import agreement_figure, curve_keys, curves_figure
from faithbench.report.render import frame_rows, latex_tabular, leaderboard

log = logging.getLogger("faithbench.report")


def figures(rep: Report, out: Path) -> None:
    """Draw every figure of every section not drawn yet into ``out/figures``."""
    for s in rep.sections:
        if not s.drawn:
            section_figures(rep, s, out)


def draw(rep: Report, s: Section) -> None:
    """``build``'s ``each``: draw one section's figures (when the options want
    figures) while its per-sample frames are loaded."""
    if rep.options.figures:
        section_figures(rep, s, Path(rep.options.out))


def section_figures(rep: Report, s: Section, out: Path) -> None:
    """Draw the figures of one section into ``out/figures`` (in worker processes inside
    ``figures.background()``: each figure's inputs are pickled and it is drawn there;
    the costliest are handed over first, so no worker is left with a long one at the
    end)."""
    labels = rep.labels or [lab for t in rep.sections for lab in t.board.labels]
    colors = method_colors(labels)
    s.drawn = True
    b = s.board
    stem = out / "figures"
    keys = curve_keys(b)
    maps = {}
    if rep.store is not None and rep.options.gallery > 0:
        maps = gallery_figures(s, load_gallery(b, rep.store), keys, colors, rep.options.gallery, stem)
    if keys:
        s.figures["Curves: mean over samples with pointwise 95% CI bands"] = draw_and_save(
            curves_figure, (b, keys, colors, s.controls), stem / f"curves_{b.slug}")
    if len(s.agreement[0]) > 1:
        s.figures["Agreement between metrics (Spearman, +1 = same ordering)"] = draw_and_save(
            agreement_figure, (b, *s.agreement), stem / f"agreement_{b.slug}")
    for t in s.ranks:
        s.cd_figures[t.key] = draw_and_save(cd_figure, (t, s.controls, f"{b.model} / {b.dataset}: {t.key}"),
                                            stem / f"cd_{b.slug}__{t.key}")
    s.figures.update(maps)  # shown after the others


def gallery_figures(s: Section, gals: dict, keys: list[str], colors: dict, n: int,
                    stem: Path) -> dict[str, list[Path]]:
    """Hand over a section's methods' views, heatmap gallery and localisation examples;
    returns the two figures' paths by caption."""
    b = s.board
    ids = common_ids(b, gals, n)
    out = {}
    if ids:
        out["Heatmap gallery: the same samples for every method"] = draw_and_save(
            gallery_figure, (b, gals, ids, s.controls), stem / f"gallery_{b.slug}",
            save_with=save_mosaic, cell=GALLERY_CELL)
        boxed = boxed_ids(b, gals, ids)
        if boxed:
            out["Localisation examples"] = draw_and_save(
                localisation_figure, (b, gals, boxed, s.controls), stem / f"localisation_{b.slug}",
                save_with=save_mosaic, cell=LOCALISATION_CELL)
    views(s, gals, keys, colors, n, stem / "methods")
    return out


def rank_figures(rep: Report, out: Path) -> None:
    """Critical-difference diagrams with (model, dataset) pairs as blocks."""
    ctrl = set().union(*(s.controls for s in rep.sections))
    for t in rep.across:
        what = "all shown metrics" if t.key == "all" else t.key
        rep.cd_figures[t.key] = draw_and_save(cd_figure, (t, ctrl, f"across (model, dataset) pairs: {what}"),
                                              out / "figures" / f"cd_across__{t.key}")


def views(s: Section, gals: dict, keys: list[str], colors: dict, n: int, stem: Path) -> None:
    """Each method's own figures for its view in the HTML page (PNG only, screen
    resolution): its curves among the others' in grey, its maps over its samples."""
    b = s.board
    curves = {lab: stem / f"{b.slug}__{i}_curves" for i, lab in enumerate(b.labels)} if keys else {}
    maps = {lab: stem / f"{b.slug}__{i}_gallery" for i, lab in enumerate(b.labels) if lab in gals and n}
    for lab in b.labels:
        s.views[lab] = [p.with_suffix(".png") for p in (curves.get(lab), maps.get(lab)) if p is not None]
    if curves:  # one figure: what the views share is drawn once
        later([p.with_suffix(".png") for p in curves.values()], curve_views, b, keys, colors, s.controls, curves)
    if maps:
        later([p.with_suffix(".png") for p in maps.values()], gallery_views,
              {lab: gals[lab] for lab in maps}, n, maps)


def curve_views(b: Board, keys: list[str], colors: dict, controls: set[str], stems: dict[str, Path]) -> None:
    drawn = CurveViews(b, keys, colors, controls)
    drawn.save_all(stems)
    drawn.close()


def gallery_views(gals: dict, n: int, stems: dict[str, Path]) -> None:
    for lab, stem in stems.items():
        method_gallery(gals[lab], n, stem)


def csv_files(rep: Report, out: Path) -> list[Path]:
    """Long-format CSV tables, full precision (every number of the other formats)."""
    frames: dict[str, list[pd.DataFrame]] = {k: [] for k in
                                             ("leaderboard", "tests", "reliability", "agreement", "win", "published",
                                              "ranks", "pairwise")}
    for s in rep.sections:
        b = s.board
        where = {"model": b.model, "dataset": b.dataset}
        info = pd.DataFrame([{"key": k.key, "metric": k.metric, "higher_is_better": k.higher_is_better,
                              "aggregate": k.aggregate, "shown": k.key in b.shown} for k in b.keys])
        cells = b.cells.merge(info, on="key").merge(b.rows[["label", "mean_rank"]], on="label")
        cells["control"] = cells["label"].isin(s.controls)
        cells["beats_controls"] = [None if not s.controls or lab in s.controls or k not in b.shown
                                   else k not in s.below.get(lab, [])  # shown outputs only
                                   for lab, k in zip(cells["label"], cells["key"])]
        frames["leaderboard"].append(cells.assign(**where))
        frames["tests"].append(s.tests.assign(**where, correction=rep.options.correction,
                                              control=s.tests["method"].isin(s.controls),
                                              versus_control=s.tests["versus"].isin(s.controls)))
        frames["reliability"].append(s.reliability.assign(**where))
        for kind, m in zip(("ranking", "sample"), s.agreement):
            if len(m):
                long = m.rename_axis("key_a").reset_index().melt("key_a", var_name="key_b", value_name="spearman")
                frames["agreement"].append(long.assign(**where, kind=kind))
        if len(s.win):
            frames["win"].append(s.win.rename("win_pct").rename_axis("label").reset_index()
                                 .assign(**where, key=rep.options.win))
        frames["published"].append(s.published)
        for t in s.ranks:
            frames["ranks"].append(pd.DataFrame([t.row()]).assign(**where))
            frames["pairwise"].append(t.pairs.assign(**where, key=t.key, correction=t.correction,
                                                      control=t.pairs["method"].isin(s.controls)))
    for t in rep.across:
        frames["ranks"].append(pd.DataFrame([t.row()]).assign(model="*", dataset="*"))
    paths = []
    for name, fs in frames.items():
        fs = [f for f in fs if len(f)]
        df = pd.concat(fs, ignore_index=True) if fs else pd.DataFrame()
        front = [c for c in ("model", "dataset") if c in df.columns]
        df = df[front + [c for c in df.columns if c not in front]]
        paths.append(out / f"{name}.csv")
        df.to_csv(paths[-1], index=False)
    paths.append(out / "runs.csv")
    rep.runs.to_csv(paths[-1], index=False)
    if rep.truth is not None:  # the known-truth section, full precision
        paths += [out / "truth.csv", out / "truth_verification.csv"]
        rep.truth.board.to_csv(paths[-2], index=False)
        rep.truth.verification.to_csv(paths[-1], index=False)
    return paths


def latex_files(rep: Report, out: Path) -> list[Path]:
    """``tables/<model>__<dataset>.tex`` (a bare booktabs tabular each, to \\input in a
    table of your own), ``tables/tests_<model>__<dataset>.tex`` (its paired tests),
    ``tables/ranks.tex`` (the rank tests) and ``leaderboard.tex`` (the leaderboards in
    captioned tables)."""
    digits = rep.options.digits
    body, paths = [], []
    for s in rep.sections:
        b = s.board
        tab = latex_tabular(*leaderboard(b, s.win, digits, "tex", s.controls, s.below))
        p = out / "tables" / f"{b.slug}.tex"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(tab + "\n")
        paths.append(p)
        if len(s.tests):  # the full list of paired tests, folded on the HTML page
            paths.append(out / "tables" / f"tests_{b.slug}.tex")
            paths[-1].write_text(latex_tabular(*frame_rows(s.tests[docs.TEST_COLS], digits, "tex")) + "\n")
        cap = docs.caption(rep, s, "tex")
        # shrink to the line width when wider, never enlarge
        body.append("\\begin{table}[t]\n\\centering\n\\small\n"
                    "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
                    f"{tab}}}\n\\caption{{{cap}}}\n\\label{{tab:{b.slug}}}\n\\end{{table}}\n")
        pub = s.published
        if len(pub):
            cols = ["method", "key", "published", "measured", "diff"]
            t = latex_tabular(*frame_rows(pub[cols], digits, "tex"))
            body.append("\\begin{table}[t]\n\\centering\n\\small\n"
                        f"{t}\n\\caption{{Published vs measured, {docs.tex(b.model)} on "
                        f"{docs.tex(b.dataset)}.}}\n\\label{{tab:published-{b.slug}}}\n\\end{{table}}\n")
    tests = [t for s in rep.sections for t in s.ranks] + rep.across
    if tests:  # Friedman tests and Nemenyi CDs, the critical-difference diagrams' numbers
        where = [(s.board.model, s.board.dataset) for s in rep.sections for _ in s.ranks]
        where += [("*", "*")] * len(rep.across)
        df = pd.DataFrame([{"model": m, "dataset": d, **t.row()} for (m, d), t in zip(where, tests)])
        paths.append(out / "tables" / "ranks.tex")
        paths[-1].write_text(latex_tabular(*frame_rows(df.drop(columns="mean_ranks"), digits, "tex")) + "\n")
    paths.insert(0, out / "leaderboard.tex")
    paths[0].write_text("% faithbench report: needs \\usepackage{booktabs} and \\usepackage{graphicx}\n"
                        + "\n".join(body))
    return paths


def write(rep: Report) -> list[Path]:
    """Write the report into ``options.out`` and return the files written."""
    opts = rep.options
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if opts.figures:
        figures(rep, out)
        rank_figures(rep, out)
        paths += [p for s in rep.sections for f in (s.figures, s.cd_figures) for ps in f.values() for p in ps]
        paths += [p for ps in rep.cd_figures.values() for p in ps]
        paths += [p for s in rep.sections for ps in s.views.values() for p in ps]
        wait()  # the page embeds the PNGs, the MLflow run holds every file
    if "csv" in opts.formats:
        paths += csv_files(rep, out)
    if "md" in opts.formats:
        paths.append(out / "report.md")
        paths[-1].write_text(docs.markdown(rep, out))
    if "tex" in opts.formats:
        paths += latex_files(rep, out)
    if "html" in opts.formats:
        paths.append(out / "report.html")
        paths[-1].write_text(webpage.html_page(rep))
    if opts.log_mlflow:
        from faithbench.report.mlflow_log import log_report

        log_report(rep, out)
    return paths
