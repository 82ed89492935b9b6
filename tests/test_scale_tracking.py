"""The scale-out paths for real: parallel jobs into a fresh SQLite store, a 4-job sweep
against a real MLflow tracking server on the loopback address, and the Ray launcher."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

SWEEP = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "model=shapes_cnn",
         "dataset=shapes", "method=saliency,grad_cam,random,center", "dataset.limit=4",
         "metrics=[pointing_game]", "figures.grid=1"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faithbench", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=600)


def _check_four_finished(client: MlflowClient) -> None:
    exp = client.get_experiment_by_name("faithbench")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["center", "grad_cam", "random", "saliency"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.metrics["n_samples"] == 4
        assert "samples.parquet" in {a.path for a in client.list_artifacts(r.info.run_id)}


def test_parallel_sweep_into_a_fresh_sqlite_store(tmp_path, monkeypatch):
    """Four joblib jobs start at once in an empty directory: the first creates the
    store's schema under a file lock, the others wait for it (without the lock, three of
    four failed in alembic migrations)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not (tmp_path / "mlflow.db").exists()
    p = _run(SWEEP, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    _check_four_finished(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 with its own SQLite backend and artifact
    folder; yields its URI and stops it afterwards."""
    srv = tmp_path / "server"
    srv.mkdir()
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{srv / 'mlflow.db'}",
         "--artifacts-destination", str(srv / "artifacts")],
        cwd=srv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_parallel_sweep_against_a_real_tracking_server(tmp_path, mlflow_server):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    work = tmp_path / "work"
    work.mkdir()
    p = _run([*SWEEP, f"tracking.uri={mlflow_server}"], work)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (work / "mlflow.db").exists()  # everything went to the server
    _check_four_finished(MlflowClient(mlflow_server))
    again = _run([*SWEEP, f"tracking.uri={mlflow_server}"], work)  # finished runs are skipped
    assert again.returncode == 0, again.stderr[-3000:]
    # all four skipped by the sweeper, before composing them (faithbench.sweep)
    assert "4 of 4 jobs finished already: skipped without composing" in again.stdout + again.stderr
    assert "Launching" not in again.stdout + again.stderr
    _check_four_finished(MlflowClient(mlflow_server))


@pytest.mark.slow
def test_sweep_through_the_ray_launcher_on_a_local_ray_runtime(tmp_path, monkeypatch):
    """``hydra/launcher=ray`` starts a local Ray runtime (``ray.init()`` on this machine)
    and runs each job as a Ray task (measured here with ray 2.60, hydra-ray-launcher
    1.2.2: `pip install ".[ray]"`)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["hydra/launcher=ray" if a.startswith("hydra/launcher") else a
            for a in SWEEP if a != "hydra.launcher.n_jobs=4"]
    p = _run(args, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    _check_four_finished(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
