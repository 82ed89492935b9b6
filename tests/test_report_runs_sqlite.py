"""The report reads a SQLite store's runs without MLflow (``runs.sqlite_runs``): the same
runs, tags, params and metrics, in the same order, as MLflow's ``search_runs``."""

from __future__ import annotations

import math
import time

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from faithbench.errors import ConfigError
from faithbench.report import runs as R


def _same(a: list[R.RunInfo], b: list[R.RunInfo]) -> None:
    assert [r.run_id for r in a] == [r.run_id for r in b]
    for x, y in zip(a, b):
        assert (x.experiment_id, x.start_time, x.tags, x.params, x.artifact_uri) == \
            (y.experiment_id, y.start_time, y.tags, y.params, y.artifact_uri)
        assert x.artifact_uri
        assert x.metrics.keys() == y.metrics.keys()
        for k in x.metrics:
            assert x.metrics[k] == y.metrics[k] or (math.isnan(x.metrics[k]) and math.isnan(y.metrics[k]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Runs of every kind the report must tell apart, in two experiments."""
    d = tmp_path_factory.mktemp("runs_sqlite")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    c = MlflowClient(uri)
    exps = {n: c.create_experiment(n) for n in ("a", "b", "gone")}
    now = int(time.time() * 1000)
    sweep_a, sweep_b = str(d / "multirun" / "x_1"), str(d / "multirun" / "xy1")

    def run(exp, start, status="FINISHED", **tags):
        ident = {"model": "m", "method": "k", "dataset": "d"}
        r = c.create_run(exps[exp], start_time=start, tags={**ident, **tags})
        rid = r.info.run_id
        c.log_batch(rid, params=[Param("metrics", "['deletion']"), Param("seed", "0")],
                    metrics=[Metric("deletion", 0.5, now, 0), Metric("deletion", 0.25, now - 5, 3),
                             Metric("n_samples", 4.0, now, 0), Metric("odd", float("nan"), now, 0)],
                    tags=[RunTag("quote", "it's")])
        if status != "RUNNING":
            c.set_terminated(rid, status)
        return rid

    for i in range(4):  # ties in start time: run id order
        run("a", now, method=f"k{i}")
    run("a", now + 1, status="FAILED")
    run("a", now + 2, status="RUNNING")
    c.delete_run(run("a", now + 3))
    run("a", now + 4, **{"faithbench.superseded": "true"})
    run("a", now + 5, **{"faithbench.kind": "report"})
    bare = c.create_run(exps["a"], start_time=now + 6, tags={"model": "m"})  # not a benchmark run
    c.set_terminated(bare.info.run_id, "FINISHED")
    run("a", now - 10, **{"faithbench.sweep": sweep_a})
    run("a", now - 11, **{"faithbench.sweep": sweep_a + "/3"})
    run("a", now - 12, **{"faithbench.sweep": sweep_b})  # "_" matches it in LIKE
    run("b", now + 7, model="other")
    run("gone", now + 8)
    c.delete_experiment(exps["gone"])
    return c


@pytest.mark.parametrize("experiments,tags,sweep", [
    (["a"], None, None), (["a", "b"], None, None), (["b", "a"], {"model": "m"}, None),
    (["a"], {"quote": "it's", "method": "k2"}, None), (["a"], {"model": "nothing"}, None),
    (["a"], None, "SWEEP"), (["gone"], None, None)])
def test_the_same_runs_as_mlflow(store, experiments, tags, sweep):
    if sweep:
        sweep = str(next(iter({r.tags["faithbench.sweep"] for r in R.mlflow_runs(store, ["a"])
                               if r.tags.get("faithbench.sweep", "").endswith("x_1")})))
    db = R.sqlite_file(store.tracking_uri)
    direct = R.sqlite_runs(db, store.tracking_uri, experiments, tags, sweep)
    assert direct is not None
    _same(direct, R.mlflow_runs(store, experiments, tags, sweep))
    _same(R.select_runs(R.LazyClient(store.tracking_uri), experiments, tags, sweep), direct)


def test_the_cases_are_there(store):
    found = R.sqlite_runs(R.sqlite_file(store.tracking_uri), store.tracking_uri, ["a"])
    assert len(found) == 7  # 4 tied, 3 in sweeps; failed, running, deleted, superseded, report, bare left out
    assert [r.tags["faithbench.sweep"][-3:] for r in found[:3]] == ["xy1", "1/3", "x_1"]  # oldest first
    assert [r.run_id for r in found[3:]] == sorted(r.run_id for r in found[3:])  # ties: run id order
    assert found[0].metrics["deletion"] == 0.25 and math.isnan(found[0].metrics["odd"])  # latest step


def test_an_unknown_experiment_names_the_known_ones(store):
    with pytest.raises(ConfigError) as direct:
        R.sqlite_runs(R.sqlite_file(store.tracking_uri), store.tracking_uri, ["nope"])
    with pytest.raises(ConfigError) as through:
        R.mlflow_runs(store, ["nope"])
    assert str(direct.value) == str(through.value)
    assert "Valid choices: Default, a, b." in str(direct.value)


def test_mlflow_reads_what_this_does_not(tmp_path, monkeypatch, store):
    assert R.sqlite_runs(tmp_path / "absent.db", "sqlite:///x", ["a"]) is None
    (tmp_path / "other.db").write_bytes(b"")  # no MLflow tables
    assert R.sqlite_runs(tmp_path / "other.db", "sqlite:///x", ["a"]) is None
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert R.sqlite_runs(R.sqlite_file(store.tracking_uri), store.tracking_uri, ["a"]) is None


def test_runs_are_read_without_importing_mlflow(store, tmp_path):
    """``LazyClient`` makes MLflow's client only when it is used; ``select_runs`` on a
    SQLite store (here named by a relative path) does not use it."""
    import shutil
    import subprocess
    import sys

    shutil.copy(R.sqlite_file(store.tracking_uri), tmp_path / "copy.db")
    code = ("import sys; from faithbench.report.runs import LazyClient, select_runs; "
            "c = LazyClient('sqlite:///copy.db'); "
            "runs = select_runs(c, ['a']); assert len(runs) == 7, len(runs); "
            "assert not {'mlflow', 'sqlalchemy'} & set(sys.modules), 'imported'; "
            "c.search_experiments(); assert 'mlflow' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path)
