"""A report built one (model, dataset) section at a time: the same tables as a report
with every frame loaded, one leaderboard's frames in memory at a time, run artifacts
read where a local store keeps them, or (any other store) from the cache by run id on a
second report, and each method's curves view drawn
over one shared background equal to a figure drawn for it alone."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from faithbench.figures import method_colors
from faithbench.report.board import make_board
from faithbench.report.build import Options, build
from faithbench.report.merge import Group, group_runs, load_frame, readable
from faithbench.report.curve_views import CurveViews
from faithbench.report.plots import curves_figure
from faithbench.report import runs as runs_module
from faithbench.report.runs import RunInfo
from faithbench.report.write import draw, write
from test_report_merge import FakeStore, rows, run

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_sweep.py"


def _log(uri: str, n_runs: int, per_pair: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.log_synthetic_runs(uri, n_runs, n_samples=12, methods_per_pair=per_pair)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, _empty_mlflow_db):
    """3 (model, dataset) pairs of 4 methods, 12 samples each, logged as the runner does."""
    root = tmp_path_factory.mktemp("stream")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # artifacts under ./mlruns
        _log(uri, 12, 4)
    return root, uri


def _opts(uri: str, out: Path, **kw) -> Options:
    kw = {"figures": False, "control": "method_00", "win": None, "log_mlflow": False,
          "n_resamples": 200, **kw}
    return Options(tracking_uri=uri, out=out, **kw)


def _text(path: Path) -> str:
    return re.sub(r"made 20[0-9T:-]+", "made -", path.read_text())


def test_section_at_a_time_writes_the_tables_of_an_all_in_memory_report(synthetic):
    root, uri = synthetic
    whole = build(_opts(uri, root / "whole"))
    assert all(g.frame is not None for s in whole.sections for g in s.board.groups)
    write(whole)
    seen = []

    def each(rep, s):
        loaded = [t.board.model for t in rep.sections if any(g.frame is not None for g in t.board.groups)]
        seen.append((s.board.model, loaded))
        draw(rep, s)

    part = build(_opts(uri, root / "part"), each=each)
    write(part)
    # one leaderboard's frames at a time, dropped once its section is done
    assert seen == [(f"model_{i}", [f"model_{i}"]) for i in range(3)]
    assert all(g.frame is None for s in part.sections for g in s.board.groups)
    files = sorted(p.relative_to(root / "whole") for p in (root / "whole").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(root / "part") for p in (root / "part").rglob("*") if p.is_file())
    assert {f.name for f in files} >= {"leaderboard.csv", "tests.csv", "pairwise.csv", "report.md",
                                       "report.html", "leaderboard.tex", "runs.csv"}
    for f in files:
        assert _text(root / "whole" / f) == _text(root / "part" / f), f
    pd.testing.assert_frame_equal(whole.runs, part.runs)
    assert whole.problems == part.problems
    assert [t.row() for t in whole.across] == [t.row() for t in part.across]


def _spy_on_artifact_calls(monkeypatch) -> list[str]:
    """The run ids of every MLflow call that lists or downloads artifacts, from now on."""
    calls: list[str] = []
    listed, downloaded = MlflowClient.list_artifacts, MlflowClient.download_artifacts
    monkeypatch.setattr(MlflowClient, "list_artifacts",
                        lambda c, rid, *a: calls.append(rid) or listed(c, rid, *a))
    monkeypatch.setattr(MlflowClient, "download_artifacts",
                        lambda c, rid, *a: calls.append(rid) or downloaded(c, rid, *a))
    return calls


def test_a_local_stores_artifacts_are_read_where_they_are(synthetic, tmp_path, monkeypatch):
    root, uri = synthetic
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = _spy_on_artifact_calls(monkeypatch)
    rep = build(_opts(uri, tmp_path / "a", figures=True), each=draw)  # figures look for gallery.npz
    write(rep)
    assert calls == []  # MLflow was not asked
    assert not (tmp_path / "cache" / "artifacts").exists()  # nothing copied
    run = rep.sections[0].board.groups[0].runs[0]
    assert run.artifact_uri.startswith("file://")
    where = runs_module.local_folder(run.artifact_uri)
    assert where.is_relative_to(root / "mlruns") and run.run_id in where.parts
    assert rep.store.get(run, "samples.parquet") == where / "samples.parquet"
    assert rep.store.get(run, "gallery.npz") is None  # the synthetic runs have none
    # the same report as one that downloads them
    monkeypatch.setattr(runs_module, "local_folder", lambda uri: None)
    downloaded = build(_opts(uri, tmp_path / "b", figures=True), each=draw)
    write(downloaded)
    assert calls
    pd.testing.assert_frame_equal(pd.concat([s.board.cells for s in downloaded.sections]),
                                  pd.concat([s.board.cells for s in rep.sections]))
    assert _text(tmp_path / "a" / "report.md") == _text(tmp_path / "b" / "report.md")


def test_local_folder_names_only_folders_on_this_machine():
    assert runs_module.local_folder("file:///data/mlruns/1/abc/artifacts") == Path("/data/mlruns/1/abc/artifacts")
    assert runs_module.local_folder("file://localhost/data/a%20b") == Path("/data/a b")
    assert runs_module.local_folder("/data/mlruns/1/abc/artifacts") == Path("/data/mlruns/1/abc/artifacts")
    assert runs_module.local_folder("/data/a%20b/mlruns") == Path("/data/a b/mlruns")  # as MLflow writes there
    for elsewhere in ("mlflow-artifacts:/1/abc/artifacts", "s3://bucket/1/abc", "file://host/data",
                      "relative/mlruns", "file:relative/mlruns", "", "hdfs:/data"):
        assert runs_module.local_folder(elsewhere) is None, elsewhere


def test_a_plain_path_artifact_root_is_read_where_mlflow_wrote_it(tmp_path, _empty_mlflow_db, monkeypatch):
    """The runner's store records its artifact root as a plain absolute path (MLflow's
    default ``./mlruns``, resolved), which MLflow percent-decodes when it writes."""
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    where = tmp_path / "a%20b"
    shutil.copy(_empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("faithbench", artifact_location=str(where / "mlruns"))
    rid = client.create_run(exp, tags={"model": "m", "method": "a", "dataset": "d"}).info.run_id
    (tmp_path / "samples.parquet").write_bytes(b"x")
    client.log_artifact(rid, str(tmp_path / "samples.parquet"))
    client.set_terminated(rid, "FINISHED")
    (run,) = runs_module.select_runs(runs_module.LazyClient(uri), ["faithbench"])
    assert "%20" in run.artifact_uri and "://" not in run.artifact_uri
    calls = _spy_on_artifact_calls(monkeypatch)
    found = runs_module.ArtifactStore(runs_module.LazyClient(uri), tmp_path / "scratch").get(run, "samples.parquet")
    assert found == tmp_path / "a b" / "mlruns" / rid / "artifacts" / "samples.parquet"
    assert found.read_bytes() == b"x" and calls == []


def test_a_second_report_reads_every_artifact_from_the_cache_by_run_id(synthetic, tmp_path, monkeypatch):
    root, uri = synthetic
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(runs_module, "local_folder", lambda uri: None)  # as a tracking server's store
    calls = _spy_on_artifact_calls(monkeypatch)
    first = build(_opts(uri, tmp_path / "a", figures=True), each=draw)  # figures look for gallery.npz
    write(first)
    assert first.store.root == first.store.cache  # no download folder besides the cache
    run_ids = {r for ids in first.runs["runs"] for r in ids.split()}
    assert set(calls) == run_ids
    cached = {p.parent.name for p in (tmp_path / "cache").rglob("samples.parquet")}
    assert cached == run_ids  # one folder per run id
    # the synthetic runs have no gallery: remembered as absent, not listed again
    assert len(list((tmp_path / "cache").rglob(".absent-gallery.npz"))) == len(run_ids)

    def refuse(*a, **k):
        raise AssertionError("the store was asked again")

    monkeypatch.setattr(MlflowClient, "list_artifacts", refuse)
    monkeypatch.setattr(MlflowClient, "download_artifacts", refuse)
    again = build(_opts(uri, tmp_path / "b", figures=True), each=draw)
    write(again)
    pd.testing.assert_frame_equal(pd.concat([s.board.cells for s in again.sections]),
                                  pd.concat([s.board.cells for s in first.sections]))
    assert _text(tmp_path / "a" / "report.md") == _text(tmp_path / "b" / "report.md")


def test_readable_reports_what_load_frame_reports(tmp_path):
    store = FakeStore({"a0": rows([0, 2]), "a1": rows([1, 3]), "x0": rows([0, 1]), "x1": rows([1, 2]),
                       "d": pd.concat([rows([0, 1]), rows([1])])}, tmp_path)
    missing = FakeStore({}, tmp_path)
    cases = [(group_runs([run("a0", "0/2"), run("a1", "1/2")], []), store, True),
             (group_runs([run("x0", "0/2", group="x"), run("x1", "1/2", group="x")], []), store, False),
             (group_runs([run("d", group="d")], []), store, False),
             (group_runs([run("a0", "0/2"), run("a1", "1/2")], []), missing, False)]
    for (g,), where, ok in cases:
        p1: list[str] = []
        p2: list[str] = []
        assert readable(g, where, p1) is ok  # type: ignore[arg-type]
        assert (load_frame(g, where, p2) is not None) is ok  # type: ignore[arg-type]
        assert p1 == p2 and bool(p1) is not ok


def _curve_board() -> object:
    """A board of 4 methods with deletion and insertion curves: one control, one method
    without the insertion curve, curves with NaN steps, non-square (N x T) values."""
    rng = np.random.default_rng(0)
    groups = []
    for m in ("cam", "grad_cam", "random", "saliency"):
        tags = {"model": "net", "method": m, "dataset": "d", "shard": "0/1"}
        params = {"metrics": "['deletion', 'insertion']", "seed": "0"}
        g = Group(f"k-{m}", [RunInfo(f"r-{m}", "1", 0, tags, params)])
        f = rows(list(range(7)))
        f["deletion"] = rng.random(7)
        f["deletion_curve"] = list(rng.random((7, 11)))
        f.loc[2, "deletion_curve"][3] = np.nan
        if m != "saliency":
            f["insertion"] = rng.random(7)
            f["insertion_curve"] = list(rng.random((7, 11)) + 0.5 * (m == "cam"))
        g.frame, g.label = f.drop(columns="a"), m
        groups.append(g)
    return make_board("net", "d", groups, None, 50, 0)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"), dtype=int)


def test_curve_views_equal_figures_drawn_alone(tmp_path):
    b = _curve_board()
    keys, colors, controls = ["deletion_curve", "insertion_curve"], method_colors(b.labels), {"random"}
    views = CurveViews(b, keys, colors, controls)
    # a method missing a panel first, then each in turn ("grad_cam": a taller title and
    # legend, another layout), then one whose background is drawn already
    for lab in ["saliency", *b.labels, "saliency"]:
        fig = curves_figure(b, keys, colors, controls, highlight=lab)
        alone = tmp_path / f"alone_{lab}.png"
        fig.savefig(alone, dpi=90)  # the whole canvas, as the views are written
        plt.close(fig)
        (view,) = views.save(lab, tmp_path / f"view_{lab}")
        a, v = _pixels(alone), _pixels(view)
        assert a.shape == v.shape
        # the same curves, band, limits, legend and title: a few antialiased pixels may
        # differ by a level or two of 255 (measured: none)
        assert np.abs(a - v).max() <= 2 and (np.abs(a - v).sum(-1) > 0).mean() < 1e-3, lab
    other = _pixels(tmp_path / "view_cam.png")
    assert (np.abs(other - _pixels(tmp_path / "view_grad_cam.png")).sum(-1) > 0).sum() > 100  # views differ
    views.close()

    views = CurveViews(b, keys, colors, controls)
    draws = []
    draw = views.fig.canvas.draw
    views.fig.canvas.draw = lambda: draws.append(1) or draw()
    paths = views.save_all({lab: tmp_path / "all" / lab for lab in b.labels})
    assert draws == [1, 1]  # one background per layout
    assert sorted(paths) == sorted(b.labels)
    for lab, (p,) in paths.items():
        assert p == tmp_path / "all" / f"{lab}.png"
        assert np.array_equal(_pixels(p), _pixels(tmp_path / f"view_{lab}.png")), lab
    views.close()


def test_a_report_does_not_import_torch(synthetic, tmp_path):
    """The report reads what it needs of the registries from the index
    (``faithbench.report.facts``): building and writing one, with figures, leaves torch
    unimported (about 2 s of a report's start on two CPU cores)."""
    import subprocess
    import sys

    root, uri = synthetic
    code = ("import sys; from faithbench.report.cli import main; "
            f"main(['--tracking-uri', {uri!r}, '--out', {str(tmp_path / 'rep')!r}, '--no-mlflow', "
            "'--control', 'method_00', '--n-resamples', '50']); "
            "print('torch' in sys.modules)")
    env = {**__import__("os").environ, "FAITHBENCH_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", "import faithbench.config as c, faithbench.index as i; "
                    "i.read(c.registry_index)"], cwd=root, env=env, check=True, timeout=600)  # the index
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "rep" / "leaderboard.csv").is_file()


def test_the_curves_figure_is_as_wide_as_its_legend():
    """Many methods with long names: the legend under the panels fits in the figure
    (saving does not crop or widen it)."""
    from faithbench.report.plots import curves_figure

    rng = np.random.default_rng(0)
    groups = []
    for i in range(20):
        m = f"a_rather_long_method_name_{i:02d}"
        tags = {"model": "net", "method": m, "dataset": "d", "shard": "0/1"}
        g = Group(f"k-{m}", [RunInfo(f"r-{m}", "1", 0, tags, {"metrics": "['deletion']", "seed": "0"})])
        f = rows(list(range(5)))
        f["deletion"] = rng.random(5)
        f["deletion_curve"] = list(rng.random((5, 6)))
        g.frame, g.label = f.drop(columns="a"), m
        groups.append(g)
    b = make_board("net", "d", groups, None, 20, 0)
    fig = curves_figure(b, ["deletion_curve"], method_colors(b.labels))
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert legend.x0 >= 0 and legend.x1 <= fig.bbox.width
    assert fig.get_figwidth() > 2.6  # widened from one panel's width
    plt.close(fig)
