"""``faithbench report`` end to end on real runs of toy entries: the numbers in every
format equal a recomputation from the per-sample parquet files, shards merge to the
unsharded result, figures and the HTML page (checked in headless Chromium) are made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import toys
from faithbench import metrics
from faithbench.aggregate import summarize
from faithbench.report.board import key_info
from faithbench.report.build import Options, build
from faithbench.report.write import write
from test_report_toys import EXTRA, LEVELS, METHODS, METRICS, base_cfg


@pytest.fixture(scope="module")
def store(tmp_path_factory, _empty_mlflow_db):
    """An MLflow store with 3 methods in experiment ``t`` and toy_method's 3 shards in
    experiment ``s``; the toy registry entries stay registered for the module."""
    from faithbench.run import run

    root = tmp_path_factory.mktemp("report")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    with toys.toy_entries(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow puts artifacts under ./mlruns
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for reg, name, fn, info in EXTRA:
            reg.register(name, **info)(fn)
        try:
            for m in METHODS:
                cfg = base_cfg(root, "t")
                cfg.method = {"name": m, "scale": 1.0} if m == "toy_method" else {"name": m}
                run(cfg)
            for s in range(3):
                cfg = base_cfg(root, "s")
                cfg.dataset.shard, cfg.dataset.num_shards = s, 3
                run(cfg)
            yield root
        finally:
            for reg, name, _, _ in EXTRA:
                reg._entries.pop(name, None)


def opts(root: Path, out: str, **kw) -> Options:
    kw.setdefault("experiments", ["t"])
    return Options(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", out=root / out,
                   control="toy_random", win="toy_drop", **kw)


@pytest.fixture(scope="module")
def report(store):
    rep = build(opts(store, "rep"))
    write(rep)
    return rep


def samples(root: Path, experiment: str) -> dict[str, pd.DataFrame]:
    """method -> readable per-sample rows, read straight from the run artifacts."""
    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name(experiment)
    out = {}
    for r in c.search_runs([exp.experiment_id]):
        if "model" not in r.data.tags:
            continue
        with tempfile.TemporaryDirectory() as d:
            df = pd.read_parquet(c.download_artifacts(r.info.run_id, "samples.parquet", d))
        out[r.data.tags["method"]] = df[df.status == "ok"].sort_values(["index", "id"]).reset_index(drop=True)
    return out


def recompute(df: pd.DataFrame, key: str) -> float:
    """The dataset value by its definition, independently of the harness: the mean
    over defined samples, or for pointing_game (class_mean) the mean of class means."""
    v = df[["target", key]].dropna().astype({key: "float64"})  # parquet holds float32
    if key_info(key, METRICS).aggregate == "class_mean":
        return float(v.groupby("target")[key].mean().mean())
    return float(v[key].mean())


def test_csv_numbers_equal_a_recomputation_from_the_parquet_files(store, report):
    board = pd.read_csv(store / "rep" / "leaderboard.csv")
    per = samples(store, "t")
    shown = board[board["shown"]]
    assert set(shown["key"]) == set(METRICS) and set(shown["label"]) == set(METHODS)
    for _, c in board.iterrows():
        df = per[c["label"]]
        assert c["mean"] == pytest.approx(recompute(df, c["key"]), rel=1e-12, abs=1e-12, nan_ok=True)
        how = key_info(c["key"], METRICS).aggregate
        s = summarize(df[c["key"]].to_numpy(float), df["target"].to_numpy(), how, seed=0)
        got, want = [c["mean"], c["ci_low"], c["ci_high"], c["n"]], [s["mean"], s["ci_low"], s["ci_high"], s["n"]]
        np.testing.assert_array_equal(got, want)  # bit-equal, NaN == NaN
    for key, g in shown.groupby("key"):
        hib = bool(g["higher_is_better"].iloc[0])
        means = g.set_index("label")["mean"]
        best = means.max() if hib else means.min()
        assert set(g.loc[g["best"], "label"]) == set(means.index[means == best])
        ordered = (-means if hib else means).rank(method="average")
        assert g.set_index("label")["rank"].to_dict() == ordered.to_dict()
    mean_rank = shown.groupby("label")["rank"].mean()
    assert shown.set_index("label")["mean_rank"].groupby(level=0).first().to_dict() == mean_rank.to_dict()


def _md_table(text: str, heading: str) -> list[list[str]]:
    block = text.split(f"### {heading}")[1].split("\n\n")[1]  # the table after the title
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split(" | ")] for r in rows]


def test_markdown_and_latex_show_the_csv_numbers(store, report):
    board = pd.read_csv(store / "rep" / "leaderboard.csv").set_index(["label", "key"])
    md = _md_table((store / "rep" / "report.md").read_text(), "Leaderboard")
    header, rows = md[0], md[2:]
    tex = (store / "rep" / "tables" / "toy_model__toy_data.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex
    tex_rows = {r.split(" & ")[0].replace(r"\_", "_"): r.split(" & ") for r in tex.splitlines() if " & " in r}
    for row in rows:
        label = row[0]
        for j, col in enumerate(header):
            key = col.rsplit(" ", 1)[0]
            if (label, key) not in board.index:
                continue
            c = board.loc[(label, key)]
            num = f"{c['mean']:.3f}"
            num = f"**{num}**" if c["best"] else num
            want = f"{num} [{c['ci_low']:.3f}, {c['ci_high']:.3f}] ({c['rank']:g})"
            assert row[j] == want
            arrow = "↑" if c["higher_is_better"] else "↓"
            assert col == f"{key} {arrow}"
            t = tex_rows[label][j]
            assert (rf"\textbf{{{c['mean']:.3f}}}" if c["best"] else f"{c['mean']:.3f}") in t
            assert rf"{{\scriptsize [{c['ci_low']:.3f}, {c['ci_high']:.3f}]}}" in t
        mr = board.xs(label, level="label")["mean_rank"].iloc[0]
        assert row[-1].strip("*") == f"{mr:.2f}"


def test_paired_tests_follow_their_definitions(store, report):
    from scipy import stats

    from faithbench.report.stats import holm

    tests = pd.read_csv(store / "rep" / "tests.csv")
    per = samples(store, "t")
    board = pd.read_csv(store / "rep" / "leaderboard.csv")
    for _, t in tests.iterrows():
        a = per[t["method"]].set_index("id")[t["key"]]
        b = per[t["versus"]].set_index("id")[t["key"]]
        d = (a - b.loc[a.index]).dropna()
        assert t["n"] == len(d) and t["mean_diff"] == pytest.approx(d.mean())
        nz = d[d != 0]
        if len(nz):
            r = stats.rankdata(nz.abs())
            wp, wm = r[nz > 0].sum(), r[nz < 0].sum()
            assert t["statistic"] == pytest.approx(min(wp, wm))
            assert t["effect"] == pytest.approx((wp - wm) / (wp + wm))
        if t["reference"] == "best":
            g = board[(board.key == t["key"]) & board.best]
            assert t["versus"] in set(g["label"])
        else:
            assert t["versus"] == "toy_random"
    assert np.allclose(tests["p_adj"], holm(tests["p"].to_numpy()), equal_nan=True)
    assert (tests["significant"] == (tests["p_adj"] < 0.05)).all()


def test_win_reliability_and_agreement_follow_their_definitions(store, report):
    from scipy import stats

    from faithbench.report.reliability import krippendorff_alpha

    per = samples(store, "t")
    wide = {k: pd.concat({m: per[m].set_index("id")[k] for m in METHODS}, axis=1).dropna()
            for k in METRICS}
    drop = wide["toy_drop"].to_numpy()
    win = pd.read_csv(store / "rep" / "win.csv").set_index("label")["win_pct"]
    for j, m in enumerate(METHODS):
        share = [(row[j] == row.min()) / (row == row.min()).sum() for row in drop]
        assert win[m] == pytest.approx(100 * np.mean(share))
    rel = pd.read_csv(store / "rep" / "reliability.csv").set_index("key")
    try:
        import krippendorff as kd
    except ImportError:
        kd = None
    for k in METRICS:
        hib = metrics.get(k).info.higher_is_better
        r = stats.rankdata(-wide[k].to_numpy() if hib else wide[k].to_numpy(), axis=1)
        assert rel.loc[k, "alpha"] == pytest.approx(krippendorff_alpha(r, "ordinal"))
        if kd is not None:  # the peer package, where installed (a test reference only)
            assert rel.loc[k, "alpha"] == pytest.approx(kd.alpha(reliability_data=r, level_of_measurement="ordinal"))
    agr = pd.read_csv(store / "rep" / "agreement.csv")
    a, b = wide["deletion"], -wide["toy_metric"]  # deletion: lower is better
    ids = a.index.intersection(b.index)
    rhos = [stats.spearmanr(-a.loc[i], -b.loc[i]).statistic for i in ids]
    want = np.nanmean([r for r in rhos if np.isfinite(r)])
    got = agr[(agr.kind == "ranking") & (agr.key_a == "deletion") & (agr.key_b == "toy_metric")]["spearman"]
    assert got.iloc[0] == pytest.approx(want)


def test_curves_read_their_x_positions_and_axis_labels(report):
    from faithbench.report.plots import DEFAULT_X, curve_band, curve_keys, x_axis

    b = report.sections[0].board
    assert curve_keys(b) == ["deletion_curve", "insertion_curve", "toy_metric_curve", "toy_noise_curve"]
    x, label = x_axis(b, "toy_noise_curve", 4)
    assert x.tolist() == pytest.approx(LEVELS) and label == "noise sigma"
    x, label = x_axis(b, "deletion_curve", 9)
    assert np.allclose(x, np.arange(9) / 8) and label == DEFAULT_X
    v = np.stack(b.frame("toy_method")["deletion_curve"].to_numpy()).astype(float)
    mean, lo, hi, n = curve_band(v)
    from scipy import stats

    for t in range(v.shape[1]):
        ci = stats.t.interval(0.95, len(v) - 1, loc=v[:, t].mean(), scale=stats.sem(v[:, t]))
        assert mean[t] == pytest.approx(v[:, t].mean())
        if np.isfinite(ci[0]):
            assert (lo[t], hi[t]) == pytest.approx(ci)


def test_published_numbers_logged_with_the_runs_are_compared(store):
    c = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    r = [r for r in c.search_runs([c.get_experiment_by_name("t").experiment_id])
         if r.data.tags.get("method") == "toy_center"][0]
    c.log_param(r.info.run_id, "published.values.toy_model.toy_data.toy_center.toy_metric", "0.3")
    c.log_param(r.info.run_id, "published.source", "a toy paper")
    rep = build(opts(store, "pub", figures=False, log_mlflow=False))
    p = rep.sections[0].published.set_index("method").loc["toy_center"]
    measured = rep.sections[0].board.cells.set_index(["label", "key"]).loc[("toy_center", "toy_metric"), "mean"]
    assert p["published"] == 0.3 and p["measured"] == measured and p["diff"] == measured - 0.3
    assert p["source"] == "a toy paper"


def test_shards_merge_to_the_unsharded_result_exactly(store):
    kw = dict(figures=False, formats=("csv",), log_mlflow=False)
    merged = build(opts(store, "m", experiments=["s"], **kw))
    single = build(opts(store, "u", tags={"method": "toy_method"}, **kw))
    (bm,), (bs,) = [s.board for s in merged.sections], [s.board for s in single.sections]
    assert merged.runs["shards"].tolist() == [3] and single.runs["shards"].tolist() == [1]
    pd.testing.assert_frame_equal(bm.frame("toy_method"), bs.frame("toy_method"), check_exact=True)
    pd.testing.assert_frame_equal(bm.cells, bs.cells, check_exact=True)
    assert not merged.problems and not single.problems


def test_incomplete_shards_are_left_out_with_a_reason(store):
    from faithbench.errors import ConfigError

    c = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("s").experiment_id], "tags.shard = '1/3'")
    c.set_tag(runs[0].info.run_id, "faithbench.superseded", "true")
    try:
        with pytest.raises(ConfigError, match=r"shards \[1\] of 3 are not finished"):
            build(opts(store, "x", experiments=["s"], figures=False, log_mlflow=False))
    finally:
        c.set_tag(runs[0].info.run_id, "faithbench.superseded", "false")


def test_report_run_is_logged_and_never_read_as_a_benchmark_run(store, report):
    from faithbench.report.runs import select_runs

    c = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = c.get_experiment_by_name("t").experiment_id
    reps = c.search_runs([exp], "tags.`faithbench.kind` = 'report'")
    assert len(reps) >= 1 and reps[0].info.status == "FINISHED"
    assert "faithbench.run_key" not in reps[0].data.tags and "model" not in reps[0].data.tags
    names = {a.path for a in c.list_artifacts(reps[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/leaderboard.csv"} <= names
    # the methods' views are in report.html only: not logged twice
    figures = {a.path for a in c.list_artifacts(reps[0].info.run_id, "report/figures")}
    assert any(p.endswith(".pdf") for p in figures) and "report/figures/methods" not in figures
    assert any((Path(report.options.out) / "figures" / "methods").iterdir())
    assert {r.run_id for r in select_runs(c, ["t"])} == set(report.runs["runs"].str.split().sum())


def test_cli_options_select_and_fail_clearly(store, capsys):
    from faithbench.report.cli import main

    uri = f"sqlite:///{store / 'mlflow.db'}"
    c = MlflowClient(uri)
    for r in c.search_runs([c.get_experiment_by_name("t").experiment_id]):
        if r.data.tags.get("method") in ("toy_method", "toy_center"):
            c.set_tag(r.info.run_id, "faithbench.sweep", str(store / "sweeps" / "a"))
    pub = store / "pub.yaml"
    pub.write_text("published:\n  source: a paper\n  values:\n    toy_model:\n      toy_data:\n"
                   "        toy_method:\n          toy_metric: 0.9\n"
                   "          deletion: {value: 0.5, unverified: true}\n")
    out = store / "cli"
    rc = main(["--tracking-uri", uri, "--experiment", "t", "--sweep", str(store / "sweeps"),
               "--out", str(out), "--formats", "md,csv", "--no-figures", "--no-mlflow",
               "--keys", "deletion,toy_metric", "--correction", "bh", "--published", str(pub)])
    assert rc == 0
    lb = pd.read_csv(out / "leaderboard.csv")
    assert set(lb["label"]) == {"toy_method", "toy_center"}
    assert set(lb.loc[lb["shown"], "key"]) == {"deletion", "toy_metric"}
    p = pd.read_csv(out / "published.csv").query("method == 'toy_method'").set_index("key")
    measured = lb[(lb.label == "toy_method") & (lb.key == "toy_metric")]["mean"].iloc[0]
    assert p.loc["toy_metric", "diff"] == pytest.approx(measured - 0.9)
    assert bool(p.loc["deletion", "unverified"]) and not (out / "report.html").exists()
    assert "Benjamini" in (out / "report.md").read_text()
    assert main(["--tracking-uri", uri, "--experiment", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["--tracking-uri", uri, "--experiment", "t", "--keys", "delet", "--no-mlflow"]) == 2
    assert "unknown output 'delet'" in capsys.readouterr().err


def test_latex_compiles(store, report, tmp_path):
    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    if engine is None:
        pytest.skip("no TeX engine (pdflatex/lualatex) installed")
    doc = tmp_path / "doc.tex"
    rep = store / "rep"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}\n"
                   f"\\begin{{document}}\\input{{{rep / 'leaderboard.tex'}}}\n"
                   f"\\begin{{table}}\\input{{{rep / 'tables' / 'toy_model__toy_data.tex'}}}\\end{{table}}\n"
                   f"\\begin{{table}}\\input{{{rep / 'tables' / 'tests_toy_model__toy_data.tex'}}}\\end{{table}}\n"
                   f"\\begin{{table}}\\input{{{rep / 'tables' / 'ranks.tex'}}}\\end{{table}}\n"
                   f"\\includegraphics{{{rep / 'figures' / 'cd_toy_model__toy_data__deletion.pdf'}}}\n"
                   f"\\includegraphics[width=\\linewidth]{{{rep / 'figures' / 'curves_toy_model__toy_data.pdf'}}}\n"
                   "\\end{document}\n")
    res = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute('data-check', JSON.stringify({imgs, tables: document.querySelectorAll('table').length,
    text: document.body.innerText.length}));
});</script></body>"""

# Drives the page as a reader would: sorts a leaderboard column twice, filters by
# dataset and metric, opens a method's view; records what is visible after each step.
DRIVE = """<script>window.addEventListener('load', () => {
  const shown = el => el.offsetParent !== null;
  const order = t => [...t.tBodies[0].rows].map(r => r.dataset.method);
  const board = document.querySelector('table.sortable'), out = {before: order(board)};
  board.querySelector('th[data-metric="deletion"]').click();
  out.asc = order(board);
  board.querySelector('th[data-metric="deletion"]').click();
  out.desc = order(board);
  const pick = (name, v) => { const s = document.querySelector(`select[name=${name}]`);
    s.value = v; s.dispatchEvent(new Event('change')); };
  const count = sel => [...document.querySelectorAll(sel)].filter(shown).length;
  out.rows_all = count('tr[data-method]');
  pick('dataset', 'toy_data');
  out.rows_dataset = count('tr[data-method]');
  out.sections = count('section[data-dataset]');
  pick('metric', 'deletion');
  out.metric_columns = count('th[data-metric]');
  out.metric_rows = [...document.querySelectorAll('tr[data-metric]')].filter(shown).map(r => r.dataset.metric);
  out.matrices = count('.matrices > div');
  pick('metric', ''); pick('dataset', '');
  out.rows_reset = count('tr[data-method]');
  out.views_before = count('.view');
  const link = [...board.querySelectorAll('a')].find(a => a.textContent === 'toy_method');
  link.click();
  setTimeout(() => {
    const open = [...document.querySelectorAll('.view')].filter(shown);
    out.views = open.map(v => v.dataset.method);
    out.view_imgs = open.length ? [...open[0].querySelectorAll('img')].map(i =>
      [i.alt, i.complete, i.naturalWidth, i.offsetWidth]) : [];
    out.hash = location.hash;
    document.body.setAttribute('data-drive', JSON.stringify(out));
  }, 200);
});</script></body>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _dump(browser: str, page: Path, profile: Path, attr: str) -> dict:
    """The page's DOM after its scripts ran in headless Chromium: the JSON in ``attr``."""
    import re

    res = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(rf"{attr}=\"([^\"]*)\"", res.stdout)
    assert m, res.stdout[:500]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium installed (Debian package 'chromium'; .ci/run installs it where apt works)")
    return browser


def test_html_page_renders_in_headless_chromium(store, report, tmp_path):
    browser = _browser()
    page = (store / "rep" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    n_fig = sum(len(s.figures) for s in report.sections)
    assert n_fig == 4
    n_cd = sum(len(s.cd_figures) for s in report.sections) + len(report.cd_figures)
    n_view = sum(len(p) for s in report.sections for p in s.views.values())
    assert n_cd == 7 + 1 and n_view == 3 * 2  # a diagram per metric and over all; curves + maps per method
    assert page.count("<img ") == n_fig + n_cd + n_view
    probe = tmp_path / "page.html"
    probe.write_text(page.replace("</body>", CHECK))
    check = _dump(browser, probe, tmp_path / "profile", "data-check")
    assert len(check["imgs"]) == n_fig + n_cd + n_view
    assert all(ok and w > 100 and h > 100 for ok, w, h in check["imgs"]), check["imgs"]
    assert check["tables"] >= 5 and check["text"] > 500
    shot = Path(os.environ.get("FAITHBENCH_REPORT_SHOT", tmp_path / "shot.png"))
    subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1300,2400", (store / "rep" / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10000


def test_html_page_sorts_filters_and_drills_down_in_headless_chromium(store, report, tmp_path):
    """The page's script in a real browser, on a report with a second (renamed) section:
    sorting orders rows by the number, the filter hides rows, sections, columns and
    matrices of other datasets and metrics, a method's name opens its view with its
    curves and maps."""
    import copy

    from faithbench.report.webpage import html_page

    browser = _browser()
    rep = copy.copy(report)
    other = copy.deepcopy(report.sections[0])
    other.board.dataset = "toy_data_b"
    rep.sections = [report.sections[0], other]
    probe = tmp_path / "page.html"
    probe.write_text(html_page(rep).replace("</body>", DRIVE))
    out = _dump(browser, probe, tmp_path / "profile", "data-drive")
    board = pd.read_csv(store / "rep" / "leaderboard.csv").query("key == 'deletion'")
    by_mean = board.sort_values(["mean", "label"])["label"].tolist()
    assert out["before"] == sorted(METHODS)  # the table's order: by label
    assert out["asc"] == by_mean and out["desc"] == board.sort_values(["mean", "label"], ascending=[False, True])["label"].tolist()
    assert out["asc"] != out["before"] or out["desc"] != out["before"]
    assert out["rows_all"] == 6 and out["rows_dataset"] == 3 and out["sections"] == 1
    assert out["metric_columns"] == 1 and out["matrices"] == 1
    assert out["metric_rows"] and set(out["metric_rows"]) == {"deletion"}
    assert out["rows_reset"] == 6 and out["views_before"] == 0
    assert out["views"] == ["toy_method"] and out["hash"].startswith("#view-")
    assert [a for a, *_ in out["view_imgs"]] == ["toy_method: curves", "toy_method: gallery"]
    assert all(ok and w > 100 and shown > 0 for _, ok, w, shown in out["view_imgs"]), out["view_imgs"]


def test_rank_statistics_equal_scipy_on_the_per_sample_blocks(store, report):
    """ranks.csv and pairwise.csv against scipy on the blocks read straight from the
    parquet files: Friedman chi-square and p, the Nemenyi CD formula, Holm over the
    k(k-1)/2 Wilcoxon tests of each metric."""
    import itertools
    import math

    from scipy import stats

    from faithbench.report.stats import holm

    per = samples(store, "t")
    ranks = pd.read_csv(store / "rep" / "ranks.csv")
    pairs = pd.read_csv(store / "rep" / "pairwise.csv")
    section = ranks[ranks["model"] == "toy_model"].set_index("key")
    assert set(section.index) == set(METRICS)  # every shown metric has per-sample values
    for key, r in section.iterrows():
        wide = pd.concat({m: per[m].set_index("id")[key].astype(float) for m in METHODS}, axis=1).dropna()
        ref = stats.friedmanchisquare(*wide.to_numpy().T)
        n, k = wide.shape
        assert (r["n"], r["k"]) == (n, k)
        assert r["friedman"] == pytest.approx(ref.statistic, rel=1e-12)
        assert r["p"] == pytest.approx(ref.pvalue, rel=1e-12)
        q = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
        assert r["cd"] == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-12)
        got = pairs[pairs["key"] == key].set_index(["method", "versus"])
        combos = list(itertools.combinations(sorted(METHODS), 2))
        p = []
        for a, b in combos:
            d = (wide[a] - wide[b]).to_numpy()
            p.append(1.0 if not np.any(d != 0) else
                     stats.wilcoxon(d[d != 0], method="exact" if len(set(np.abs(d[d != 0]))) == (d != 0).sum()
                                    else "approx").pvalue)
        for (a, b), pa in zip(combos, holm(np.array(p))):
            assert got.loc[(a, b), "p_adj"] == pytest.approx(pa) == got.loc[(b, a), "p_adj"]
    board = pd.read_csv(store / "rep" / "leaderboard.csv")
    cells = board[board["shown"]].pivot(index="key", columns="label", values="mean").dropna(axis=1)
    overall = ranks[ranks["key"] == "all"].iloc[0]
    hib = board.groupby("key")["higher_is_better"].first().loc[cells.index]
    oriented = cells.to_numpy() * np.where(hib, 1.0, -1.0)[:, None]  # each block ranked by its direction
    ref = stats.friedmanchisquare(*oriented.T)
    assert overall["n"] == len(cells) and overall["friedman"] == pytest.approx(ref.statistic, rel=1e-12)


def test_controls_are_marked_and_methods_below_them_flagged(store, report):
    board = pd.read_csv(store / "rep" / "leaderboard.csv")
    pairs = pd.read_csv(store / "rep" / "pairwise.csv").set_index(["key", "method", "versus"])
    ctrl = {"toy_random", "toy_center"}
    assert set(board.loc[board["control"], "label"]) == ctrl
    s = report.sections[0]
    flagged = []
    for _, c in board[board["shown"] & ~board["control"]].iterrows():
        means = board[board["key"] == c["key"]].set_index("label")["mean"]
        better = [(c["mean"] > means[x]) if c["higher_is_better"] else (c["mean"] < means[x]) for x in ctrl]
        # an intersection-union test: each (method, control) test at alpha, raw p-values
        sig = [bool(pairs.loc[(c["key"], c["label"], x), "p"] < 0.05
                    and pairs.loc[(c["key"], c["label"], x), "better"]) for x in ctrl]
        beats = all(better) and all(sig)
        assert c["beats_controls"] == beats
        if not beats:
            flagged.append(c["key"])
    assert s.below.get("toy_method", []) == sorted(flagged, key=s.board.shown.index)
    md = _md_table((store / "rep" / "report.md").read_text(), "Leaderboard")
    col = md[0].index("beats controls")
    rows = {r[0]: r[col] for r in md[2:]}
    assert rows["toy_random"] == rows["toy_center"] == "control"
    assert rows["toy_method"] == ("yes" if not flagged else "**no: " + ", ".join(s.below["toy_method"]) + "**")
    text = (store / "rep" / "report.md").read_text()
    for title in ("Ranks over samples", "Paired tests", "Significance: deletion"):
        table = text.split(f"### {title}")[1].split("\n\n")[1]
        assert "toy_random (control)" in table and "toy_center (control)" in table
        assert "toy_method (control)" not in table
    tests = pd.read_csv(store / "rep" / "tests.csv")
    assert (tests["control"] == tests["method"].isin(ctrl)).all() and tests["versus_control"].any()
    html = (store / "rep" / "report.html").read_text()
    assert html.count("toy_random (c)") == html.count("toy_center (c)") == len(s.ranks)  # a matrix row each (columns are numbered)
    for paths in [*s.cd_figures.values(), *report.cd_figures.values()]:
        pdf = paths[1].read_bytes()
        assert paths[0].exists() and b"/Subtype /Image" not in pdf  # vector only
        width_pt = float(pdf.split(b"/MediaBox [")[1].split()[2])
        assert width_pt <= 3.5 * 72  # one column (3.3 in) plus the tight bounding box's slack


def test_rank_tests_across_pairs_use_each_pairs_means_as_a_block(report):
    """Two (model, dataset) pairs (the toy one and a copy with other means): one test
    per metric with the pairs as blocks, one over every (pair, metric) cell, each block
    oriented by its metric's direction; a method missing from a pair is left out."""
    import copy

    from scipy import stats

    from faithbench.report.ranking import across_ranks

    a = report.sections[0].board
    b = copy.deepcopy(a)
    b.dataset = "toy_data_b"
    b.cells["mean"] = b.cells["mean"] * np.where(b.cells["label"] == "toy_center", 0.5, 1.5)
    problems: list[str] = []
    tests = {t.key: t for t in across_ranks([a, b], 0.05, "holm", problems)}
    assert set(tests) == set(a.shown) | {"all"} and not problems
    for key in a.shown:
        wide = np.array([[bd.cells.set_index(["label", "key"]).loc[(m, key), "mean"] for m in sorted(METHODS)]
                         for bd in (a, b)])
        t = tests[key]
        assert t.n == 2 and t.blocks == "(model, dataset) pairs"
        if np.unique(wide[0]).size > 1 or np.unique(wide[1]).size > 1:
            assert t.statistic == pytest.approx(stats.friedmanchisquare(*wide.T).statistic)
    hib = np.array([a.info(k).higher_is_better for k in a.shown] * 2)
    cells = np.array([[bd.cells.set_index(["label", "key"]).loc[(m, k), "mean"] for m in sorted(METHODS)]
                      for bd in (a, b) for k in a.shown])
    oriented = cells * np.where(hib, 1.0, -1.0)[:, None]
    assert tests["all"].n == 2 * len(a.shown)
    assert tests["all"].statistic == pytest.approx(stats.friedmanchisquare(*oriented.T).statistic)
    b.cells = b.cells[b.cells["label"] != "toy_random"]
    tests = {t.key: t for t in across_ranks([a, b], 0.05, "holm", problems)}
    assert set(tests["all"].labels) == {"toy_method", "toy_center"}
    assert any("toy_random left out" in p for p in problems)


def test_the_cli_section_by_section_report_writes_what_build_and_write_do(store):
    """``faithbench report`` draws each section's figures and drops its frames before
    building the next: every table, figure (PNG) and page equals the all-in-memory
    report's, on the same runs."""
    import re

    from faithbench.report.write import draw

    whole = build(opts(store, "rep_whole"))
    write(whole)
    rep = build(opts(store, "rep_sections"), each=draw)
    write(rep)
    assert all(g.frame is None for s in rep.sections for g in s.board.groups)
    a, b = store / "rep_whole", store / "rep_sections"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(f.suffix == ".png" and "methods" in f.parts for f in files)  # the methods' views
    for f in files:
        if f.suffix == ".pdf":
            continue
        x, y = (a / f).read_bytes(), (b / f).read_bytes()
        if f.suffix in (".md", ".html"):  # the time the report was made
            x, y = (re.sub(rb"made 20[0-9T:-]+", b"", t) for t in (x, y))
        assert x == y, f


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_figures_drawn_by_worker_processes_equal_those_drawn_here(store):
    """As ``faithbench report`` runs: inside ``figures.background`` every figure and
    view is drawn and written by worker processes, and the files equal those drawn in
    this process (PNGs byte for byte, PDFs present), tables and page the same."""
    import re

    from faithbench.figures import background
    from faithbench.report.write import draw

    here = build(opts(store, "rep_here"), each=draw)
    write(here)
    with background(2):
        there = build(opts(store, "rep_there"), each=draw)
        write(there)
    a, b = store / "rep_here", store / "rep_there"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert {f.name.split("_")[0] for f in files if f.suffix == ".pdf"} >= {"curves", "gallery", "localisation", "cd"}
    for f in files:
        x, y = (a / f).read_bytes(), (b / f).read_bytes()
        if f.suffix == ".pdf":
            assert y.startswith(b"%PDF-") and len(y) > 1000
            continue
        if f.suffix in (".md", ".html"):
            x, y = (re.sub(rb"made 20[0-9T:-]+", b"", t) for t in (x, y))
        assert x == y, f
