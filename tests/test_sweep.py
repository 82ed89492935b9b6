"""faithbench's sweeper (``faithbench.sweep``): a rerun skips finished jobs without
composing them, exactly when the runner would have skipped them by run key, and each
launched job's config is composed once."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from faithbench import sweep
from faithbench.cli import compose
from faithbench.models.shapes_cnn import WEIGHTS
from faithbench.run import apply_method_params, job_files, job_key

SWEEP = ["-m", "method=saliency,gradient_x_input", "dataset.limit=2", "metrics=[deletion]",
         "metric.deletion.step=0.25", "figures.grid=0", "batch_size=2"]
FAST = "jobs finished already: skipped without composing them"


def _cli(*args: str, cwd: Path) -> str:
    """What ``faithbench <args>`` prints: the sweep's table (stdout) after its log."""
    p = subprocess.run([sys.executable, "-m", "faithbench", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stderr + p.stdout


def _runs(cwd: Path) -> list:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    return client.search_runs([exp.experiment_id])


def _job_tags(run) -> dict[str, list]:
    return {k: json.loads(v) for k, v in run.data.tags.items() if k.startswith(sweep.TAG)}


def test_rerun_skips_finished_jobs_without_composing_them(workdir):
    weights = workdir / "weights.pt"  # a copy: the test changes its time
    shutil.copy(WEIGHTS, weights)
    args = [*SWEEP, f"model.checkpoint={weights}"]
    first = _cli(*args, cwd=workdir)
    assert FAST not in first
    runs = _runs(workdir)
    assert len(runs) == 2
    for r in runs:  # each run names the files its key reads: the weights
        (files,) = _job_tags(r).values()
        assert [f[0] for f in files] == [str(weights)]
        assert files[0][1:] == [weights.stat().st_size, weights.stat().st_mtime_ns]
    # with the sweeper and the registry index in the loop, a sweep's job has the run key
    # of the same config composed in Python: what a sweep skips, the runner would skip
    keys = {r.data.tags["faithbench.run_key"] for r in runs}
    assert keys == {job_key(apply_method_params(compose([f"method={m}", *args[2:]])))
                    for m in ("saliency", "gradient_x_input")}
    table = first.splitlines()[-3:]  # the summary table: header and two rows
    assert "saliency" in table[-1] or "saliency" in table[-2]

    again = _cli(*args, cwd=workdir)
    assert f"2 of 2 {FAST}" in again
    assert "Launching" not in again and "finished already (run" not in again  # no job ran
    assert again.splitlines()[-3:] == table  # the same numbers, read from the runs
    assert len(_runs(workdir)) == 2

    # the weights file's time changes: the runner's own check (same bytes: skipped by key)
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = _cli(*args, cwd=workdir)
    assert FAST not in touched and touched.count("finished already (run") == 2
    assert len(_runs(workdir)) == 2  # nothing recomputed
    # ... which tags the runs with the new time: the next rerun is fast again
    assert f"2 of 2 {FAST}" in _cli(*args, cwd=workdir)

    # another job (a third method) runs; the two finished ones are skipped fast
    mixed = _cli(*[a if not a.startswith("method=") else a + ",grad_cam" for a in args], cwd=workdir)
    assert f"2 of 3 {FAST}" in mixed and "Launching 1 jobs" in mixed
    assert len(_runs(workdir)) == 3
    # the sweep's summary lists every job, the launched one first
    summaries = sorted(workdir.glob("faithbench_out/hydra/multirun/*/*/*/summary.json"),
                       key=lambda p: p.stat().st_mtime)[-3:]
    assert {json.loads(p.read_text())["method"] for p in summaries} == {
        "saliency", "gradient_x_input", "grad_cam"}

    # force=true is never skipped this way: both recomputed
    forced = _cli(*args, "force=true", cwd=workdir)
    assert FAST not in forced and "finished already" not in forced
    assert len(_runs(workdir)) == 5


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "extra"
    conf.mkdir()
    (conf / "x.yaml").write_text("a: ${oc.env:MY_VAR,1}\n")
    cfg = OmegaConf.create({"hydra": {"runtime": {"cwd": str(tmp_path), "config_sources": [
        {"provider": "main", "schema": "pkg", "path": "faithbench.conf"},
        {"provider": "command-line", "schema": "file", "path": str(conf)}]},
        "overrides": {"hydra": ["hydra.mode=MULTIRUN"]}}})
    return cfg, conf


def test_job_digest_changes_with_what_decides_a_config(base, monkeypatch):
    cfg, conf = base
    ref = sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])
    assert ref == sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])
    assert ref != sweep.job_digest(sweep.digest_base(cfg), ["method=grad_cam"])
    assert ref != sweep.job_digest(sweep.digest_base(cfg), ["method=saliency", "seed=1"])
    # an environment variable that a config file of the sweep reads, or a loader's
    monkeypatch.setenv("MY_VAR", "2")
    assert ref != sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])
    monkeypatch.delenv("MY_VAR")
    monkeypatch.setenv("TORCH_HOME", "/elsewhere")
    assert ref != sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("UNRELATED_VAR", "1")  # not read: the digest stays
    monkeypatch.setenv(sweep.ENV, "a previous job's")
    assert ref == sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])
    # a config file of a --config-dir, and the sweep's Hydra overrides
    (conf / "y.yaml").write_text("b: 1\n")
    assert ref != (changed := sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"]))
    cfg.hydra.overrides.hydra.append("hydra.searchpath=[file:///x]")
    assert changed != sweep.job_digest(sweep.digest_base(cfg), ["method=saliency"])


def test_finished_reads_runs_with_unchanged_files(workdir, tmp_path, monkeypatch):
    from faithbench import schema, tracking
    from faithbench.report import runs as report_runs

    tracker = tracking.tracker(None, "faithbench")
    f = tmp_path / "w.bin"
    f.write_bytes(b"12")
    ids = {}
    for name, status, tags in (("ok", "FINISHED", {}), ("killed", "KILLED", {}),
                               ("old", "FINISHED", {schema.SUPERSEDED: "true"}),
                               ("moved", "FINISHED", {})):
        rid = tracker.start(f"key-{name}", name, tags)
        tracker.set_tags(rid, {sweep.TAG + name: sweep.files_tag([str(f)]),
                               sweep.TAG + name + "2": sweep.files_tag([str(f), str(tmp_path / "no")])})
        tracker.finish(rid, status)
        ids[name] = rid
    cfg = OmegaConf.create({"tracking": {"uri": None, "experiment": "faithbench"}})
    found = sweep.finished(cfg, ["ok", "killed", "old", "ok2", "unknown"])
    assert {d: r.run_id for d, r in found.items()} == {"ok": ids["ok"], "ok2": ids["ok"]}
    # read straight from the SQLite file: the same runs as through MLflow
    with monkeypatch.context() as m:
        m.setattr(report_runs, "sqlite_runs", lambda *a, **k: None)
        through_mlflow = sweep.finished(cfg, ["ok", "killed", "old", "ok2", "unknown"])
    assert {d: (r.run_id, r.tags, r.metrics) for d, r in through_mlflow.items()} == \
        {d: (r.run_id, r.tags, r.metrics) for d, r in found.items()}
    (tmp_path / "no").write_bytes(b"")  # a file recorded absent appears
    assert set(sweep.finished(cfg, ["ok", "ok2"])) == {"ok"}
    f.write_bytes(b"123")  # the weights change
    assert sweep.finished(cfg, ["ok", "moved"]) == {}
    assert sweep.finished(OmegaConf.create({"tracking": {"uri": None, "experiment": "other"}}), ["ok"]) == {}


def test_finished_reads_the_latest_finished_run_of_each_key(workdir, monkeypatch):
    """Two finished runs of one job (two sweeps at once), the latest then superseded by
    a forced rerun (which has no job tag): the job is not skipped by its digest, also
    not through the older run; with a second key, the latest run of the digest."""
    from faithbench import schema, tracking
    from faithbench.report import runs as report_runs

    tracker = tracking.tracker(None, "faithbench")
    ids = {}
    for name, key, tags in (("first", "k", {}), ("second", "k", {}), ("other", "k2", {}),
                            ("newer", "k2", {})):
        rid = tracker.start(key, name, tags)
        tracker.set_tags(rid, {sweep.TAG + key: sweep.files_tag([])})
        tracker.finish(rid)
        ids[name] = rid
        time.sleep(0.01)  # distinct start times
    cfg = OmegaConf.create({"tracking": {"uri": None, "experiment": "faithbench"}})
    assert {d: r.run_id for d, r in sweep.finished(cfg, ["k", "k2"]).items()} == \
        {"k": ids["second"], "k2": ids["newer"]}
    tracker.set_tags(ids["second"], {schema.SUPERSEDED: "true"})
    forced = tracker.start("k", "forced", {})
    tracker.finish(forced)
    assert set(sweep.finished(cfg, ["k", "k2"])) == {"k2"}
    with monkeypatch.context() as m:  # as through MLflow
        m.setattr(report_runs, "sqlite_runs", lambda *a, **k: None)
        assert set(sweep.finished(cfg, ["k", "k2"])) == {"k2"}


class Loader:
    """A config loader that counts its compositions."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def load_sweep_config(self, master_config, sweep_overrides):
        self.calls.append(list(sweep_overrides))
        return OmegaConf.create({"job": list(sweep_overrides), "n": len(self.calls)})

    other = "forwarded"


def test_launcher_gets_the_config_composed_to_validate():
    loader = Loader()
    once = sweep.ComposeOnce(loader)
    once.compose(OmegaConf.create({}), ["a=1"])
    once.compose(OmegaConf.create({}), ["a=2"])
    assert once.load_sweep_config(OmegaConf.create({}), ["a=2"]).n == 2
    assert once.load_sweep_config(OmegaConf.create({}), ["a=1"]).n == 1
    assert len(loader.calls) == 2  # composed once each
    assert once.load_sweep_config(OmegaConf.create({}), ["a=1"]).n == 3  # held once only
    assert once.other == "forwarded"
    once.compose(OmegaConf.create({}), ["a=3"])
    sent = pickle.loads(pickle.dumps(once))  # to a parallel launcher's worker
    assert sent.other == "forwarded" and sent._held == {} and len(once._held) == 1


def test_job_files_are_the_weights_and_outside_code(workdir, tmp_path, monkeypatch):
    cfg = apply_method_params(compose(["method=saliency"]))
    assert job_files(cfg) == [str(WEIGHTS)]
    (tmp_path / "my_method.py").write_text(
        "import torch\n\ndef explain(model, x, target):\n    return x.abs().sum(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = apply_method_params(compose(["method=callable", "method.fn=my_method:explain"]))
    assert job_files(cfg) == [str(WEIGHTS), str(tmp_path / "my_method.py")]


def _loader_and_master():
    """Hydra's config loader and the master config of a faithbench sweep."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from faithbench.config import store_nodes

    store_nodes()
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        master = hydra_compose("config", overrides=["hydra.mode=MULTIRUN"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    return loader, master


@pytest.mark.parametrize("workers,meanwhile", [("2", True), ("1", True), ("2", False)])
def test_parallel_composition_gives_the_serial_configs(monkeypatch, workers, meanwhile):
    """(Serial where the platform does not fork: the same assertions hold.) A later
    batch of a sweep has nothing to do meanwhile."""
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", workers)
    loader, master = _loader_and_master()
    jobs = [["method=saliency"], ["method=grad_cam", "dataset.limit=3"], ["+pair=photos", "method=rise"]]
    serial, parallel = sweep.ComposeOnce(loader), sweep.ComposeOnce(loader)
    for j in jobs:
        serial.compose(master, j)
    seen = []
    parallel.compose_all(master, jobs, meanwhile=(lambda: seen.append(os.getpid())) if meanwhile else None)
    assert seen == [os.getpid()] * meanwhile  # called once, in this process
    for j in jobs:
        a = serial.load_sweep_config(master, j)
        b = parallel.load_sweep_config(master, j)
        assert OmegaConf.to_container(a) == OmegaConf.to_container(b)
        assert OmegaConf.to_yaml(a) == OmegaConf.to_yaml(b)


class _Spy:
    """A config loader that records the jobs composed in this process and makes a
    forked worker die on ``dies``."""

    def __init__(self, loader, dies=None):
        self.loader, self.dies, self.parent, self.here = loader, dies, os.getpid(), []

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config, sweep_overrides):
        if os.getpid() != self.parent and sweep_overrides == self.dies:
            for w in sweep._FORKED[4]:  # half a message on this worker's pipe (the others are closed)
                if not w.closed:
                    os.write(w.fileno(), (4096).to_bytes(4, "big") + b"cut short")
            os._exit(3)
        if os.getpid() == self.parent:
            self.here.append(list(sweep_overrides))
        return self.loader.load_sweep_config(master_config=master_config, sweep_overrides=sweep_overrides)


def _same_as_serial(loader, master, once, jobs):
    serial = sweep.ComposeOnce(loader)
    for j in jobs:
        serial.compose(master, j)
        assert OmegaConf.to_yaml(once.load_sweep_config(master, j)) == \
            OmegaConf.to_yaml(serial.load_sweep_config(master, j))


def test_this_process_composes_too_once_its_own_work_is_done(monkeypatch):
    """The jobs come from one counter: the sweep's process takes them after ``meanwhile``."""
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "1")
    loader, master = _loader_and_master()
    jobs = [[f"seed={i}"] for i in range(8)]
    spy = _Spy(loader)
    once = sweep.ComposeOnce(spy)
    once.compose_all(master, jobs, meanwhile=lambda: None)
    assert 0 < len(spy.here) < len(jobs)  # both took jobs
    _same_as_serial(loader, master, once, jobs)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_job_whose_worker_died_is_composed_here(monkeypatch, workers):
    """Even when it died while sending: the other workers' configs arrive whole."""
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", workers)
    loader, master = _loader_and_master()
    jobs = [["seed=1"], ["seed=2"], ["seed=3"], ["seed=4"], ["method=saliency"]]
    spy = _Spy(loader, dies=["method=saliency"])

    def meanwhile():  # until the worker has taken every job
        deadline = time.monotonic() + 60
        while sweep._FORKED[3].value < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)

    once = sweep.ComposeOnce(spy)
    once.compose_all(master, jobs, meanwhile=meanwhile)
    assert spy.here == [["method=saliency"]]  # the worker composed the seeds, died on saliency
    _same_as_serial(loader, master, once, jobs)


def test_workers_are_stopped_when_the_work_meanwhile_fails(monkeypatch):
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "1")
    loader, master = _loader_and_master()
    seen = []

    def meanwhile():
        seen.extend(multiprocessing.active_children())
        raise RuntimeError("store unreachable")

    with pytest.raises(RuntimeError, match="store unreachable"):
        sweep.ComposeOnce(loader).compose_all(master, [[f"seed={i}"] for i in range(20)], meanwhile)
    assert seen and not any(p.is_alive() for p in seen)
    assert sweep._FORKED is None


def test_a_new_store_is_a_sqlite_file_not_made_yet(tmp_path, monkeypatch):
    """By the tracking URI's rules (``stores.resolve_uri``): the configured URI, else
    $MLFLOW_TRACKING_URI, else ``mlflow.db`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def new(uri=None):
        return sweep.new_store(OmegaConf.create({"tracking": {"uri": uri}}))

    assert new() and new("sqlite:///sub/x.db") and new(f"sqlite:///{tmp_path}/x.db")
    (tmp_path / "mlflow.db").touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.db").touch()
    assert not new() and not new("sqlite:///sub/x.db") and not new(f"sqlite:///{tmp_path}/sub/x.db")
    assert not new("http://127.0.0.1:5000") and not new(f"file://{tmp_path}/mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///other.db")
    assert new() and not new("sqlite:///sub/x.db")


def test_compose_workers_leave_a_core_to_the_sweeps_process(monkeypatch):
    """The sweep's process composes too, once its own work (``warm``) is done."""
    from faithbench import forks

    monkeypatch.delenv("FAITHBENCH_COMPOSE_WORKERS", raising=False)
    monkeypatch.setattr(forks, "can_fork", lambda: True)
    monkeypatch.setattr(forks, "cores", lambda: 2)
    assert sweep.compose_workers(46) == 1 and sweep.compose_workers(1) == 0
    monkeypatch.setattr(forks, "cores", lambda: 8)
    assert sweep.compose_workers(46) == 7 and sweep.compose_workers(3) == 3
    monkeypatch.setattr(forks, "cores", lambda: 1)
    assert sweep.compose_workers(46) == 0
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "0")
    monkeypatch.setattr(forks, "cores", lambda: 8)
    assert sweep.compose_workers(46) == 0
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "3")
    assert sweep.compose_workers(46) == 3
    monkeypatch.setattr(forks, "can_fork", lambda: False)
    assert sweep.compose_workers(46) == 0


def test_configs_composed_with_the_config_store_shared_are_hydras():
    import copy

    from hydra.core.config_store import ConfigStore

    loader, master = _loader_and_master()
    store = ConfigStore.instance()
    jobs = [["method=saliency"], ["+pair=photos", "method=rise", "metrics=[deletion]"],
            ["method=grad_cam", "+method_params.grad_cam.relu=false", "seed=3"]]
    once = sweep.ComposeOnce(loader)
    for j in jobs:
        plain = sweep.selected_metrics_only(loader.load_sweep_config(master_config=master, sweep_overrides=j))
        once.compose(master, j)
        shared = once.load_sweep_config(master, j)
        assert OmegaConf.to_yaml(shared) == OmegaConf.to_yaml(plain)
    with sweep.config_store_shared():
        assert copy.deepcopy(store) is store
        with sweep.config_store_shared():  # nested: the outer block restores
            pass
        assert copy.deepcopy(store) is store
    assert "__deepcopy__" not in vars(ConfigStore)
    assert copy.deepcopy(store) is not store  # Hydra's behaviour outside the block
    from hydra._internal.core_plugins.importlib_resources_config_source import \
        ImportlibResourcesConfigSource as Source

    read, source = Source._read_config, Source("faithbench", "pkg://faithbench.conf")
    res = __import__("importlib.resources").resources.files("faithbench.conf") / "config.yaml"
    with sweep.config_store_shared():
        first, again = Source._read_config(source, res), Source._read_config(source, res)
        assert first.config is not again.config and first.config == again.config  # parsed once, copied
        first.config.pop("defaults")  # what Hydra's repository does to what it loads
        assert "defaults" in Source._read_config(source, res).config
    assert Source._read_config is read


@pytest.mark.parametrize("overrides,kept", [
    (["metrics=[deletion,pointing_game]"], ["deletion", "pointing_game"]),
    (["metrics=[deletion]", "metric.deletion.substitute=${oc.env:HOME}"], ["deletion"]),
    # what could read another metric's node keeps them all
    (["metrics=[deletion]", "metric.deletion.step=${metric.insertion.step}"], None),
    (["metrics=[deletion,insertion]", "metric.deletion.step=${..insertion.step}"], None),
    (["metrics=[deletion,${oc.env:NO_SUCH_VAR,insertion}]"], None),
    (["metrics=[deletion]", "+extra=${metric.insertion.step}"], None),
    (["metrics=[deletion]", "+method_params.saliency.x=${metric.insertion.step}"], None),
    (["metrics=[deletion]", "+indirect=${metric.insertion.step}", "metric.deletion.step=${indirect}"], None),
    (["metrics=[deletion]", "+whole=${metric}"], None),
    (["metrics=[deletion]", "metric.deletion=${metric.insertion}"], None),
    (["metrics=[deletion,my.module:fn]"], ["deletion"])])
def test_a_job_config_holds_the_nodes_of_its_metrics(overrides, kept):
    """Everything else as Hydra composed it; the run key and the logged params (which
    read the selected nodes only) unchanged."""
    from faithbench.config import run_key
    from faithbench.run import logged_config

    loader, master = _loader_and_master()
    full = loader.load_sweep_config(master_config=master, sweep_overrides=overrides)
    every = sorted(full.metric)
    once = sweep.ComposeOnce(loader)
    once.compose(master, overrides)
    job = once.load_sweep_config(master, overrides)
    assert sorted(job.metric) == (every if kept is None else kept)
    rest = lambda c: {k: v for k, v in OmegaConf.to_container(c, resolve=False).items() if k != "metric"}  # noqa: E731
    assert rest(job) == rest(full)
    if kept is not None and "my.module:fn" not in overrides[0]:
        assert OmegaConf.to_container(job.metric) == {m: OmegaConf.to_container(full.metric[m]) for m in kept}
        for c in (job, full):
            OmegaConf.set_struct(c, False)
            del c["hydra"]
        assert run_key(job, "w") == run_key(full, "w") and logged_config(job) == logged_config(full)


def test_selecting_metric_nodes_resolves_nothing(monkeypatch):
    """A node the job's environment sets (``hydra.job.env_set``) need not resolve in the
    sweep's process."""
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    loader, master = _loader_and_master()
    once = sweep.ComposeOnce(loader)
    overrides = ["metrics=[deletion]", "metric.deletion=${oc.env:NO_SUCH_VAR}"]
    once.compose(master, overrides)
    job = once.load_sweep_config(master, overrides)
    assert list(job.metric) == ["deletion"] and OmegaConf.is_interpolation(job.metric, "deletion")


def test_the_collector_is_paused_while_a_sweep_starts_and_the_imports_frozen():
    import gc

    assert gc.isenabled()
    thresholds = gc.get_threshold()
    try:
        assert sweep.pause_gc() is True and not gc.isenabled()
        assert sweep.pause_gc() is False  # already off: the caller leaves it off
        frozen = gc.get_freeze_count()
        sweep.freeze_startup(resume=False)
        assert not gc.isenabled() and gc.get_freeze_count() > frozen
        if sys.version_info < (3, 14):  # 3.14's incremental collector ignores the third
            assert gc.get_threshold() == (*thresholds[:2], sweep.FULL_COLLECTION_EVERY)
        sweep.freeze_startup(resume=True)
        assert gc.isenabled()
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()
        gc.unfreeze()


def test_a_sweep_in_process_restores_the_collector(workdir, monkeypatch):
    import gc

    import faithbench.run
    from faithbench import cli

    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "0")
    monkeypatch.setattr(sys, "argv", ["faithbench", *SWEEP])
    thresholds = gc.get_threshold()
    seen = []
    run = faithbench.run.run

    def recorded(cfg):
        seen.append((gc.isenabled(), gc.get_threshold()))
        return run(cfg)

    monkeypatch.setattr(faithbench.run, "run", recorded)
    try:
        gc.set_threshold(500, 7, 3)
        gc.unfreeze()
        cli.main(SWEEP)  # not the process's command line: no fast exit
        assert [on for on, _ in seen] == [True, True]  # both jobs ran, the collector on
        if sys.version_info < (3, 14):  # 3.14's incremental collector ignores the third
            assert [t for _, t in seen] == [(500, 7, sweep.FULL_COLLECTION_EVERY)] * 2
            assert gc.get_threshold() == (500, 7, 3)
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0  # what the sweep froze is collectable again
        assert len(_runs(workdir)) == 2
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()
        gc.unfreeze()


def test_parallel_composition_raises_the_first_error_in_order(monkeypatch):
    monkeypatch.setenv("FAITHBENCH_COMPOSE_WORKERS", "2")
    loader, master = _loader_and_master()
    bad = ["method=no_such_method"]
    with pytest.raises(Exception) as serial:
        sweep.ComposeOnce(loader).compose(master, bad)
    once = sweep.ComposeOnce(loader)
    with pytest.raises(type(serial.value)) as parallel:
        once.compose_all(master, [["method=saliency"], bad, ["method=also_missing"]])
    assert str(parallel.value) == str(serial.value)


def test_a_composition_error_stops_the_sweep_before_any_job(workdir):
    p = subprocess.run([sys.executable, "-m", "faithbench", *SWEEP[:1], "method=saliency,no_such_method",
                        *SWEEP[2:]], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1
    assert "no_such_method" in p.stderr and "Launching" not in p.stderr + p.stdout
    assert not list(workdir.glob("faithbench_out/runs/*"))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])


def test_finished_reads_a_sqlite_store_without_importing_mlflow(workdir):
    from faithbench import tracking

    tracker = tracking.tracker(None, "faithbench")
    rid = tracker.start("key-a", "a", {})
    tracker.set_tags(rid, {sweep.TAG + "job": sweep.files_tag([])})
    tracker.finish(rid)
    code = ("import sys; from omegaconf import OmegaConf; from faithbench import sweep; "
            "cfg = OmegaConf.create({'tracking': {'uri': None, 'experiment': 'faithbench'}}); "
            "print(sweep.finished(cfg, ['job'])['job'].run_id, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [rid, "False"]
