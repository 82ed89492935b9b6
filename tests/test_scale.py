"""Never lose a result: kills at random moments, parallel jobs on one store, a corrupt
cache, sharded runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from faithbench.cache import HeatmapCache

SWEEP = ["-m", "method=saliency,grad_cam", "dataset.limit=10", "part_size=2", "batch_size=2",
         "metrics=[deletion,pointing_game]", "metric.deletion.step=0.2", "figures.grid=2"]


def _faithbench(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "faithbench", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _finished(cwd: Path, experiment: str = "faithbench") -> dict[str, pd.DataFrame]:
    """method -> per-sample rows of its FINISHED run (exactly one per run key)."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:  # killed before the first run was opened
        return {}
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.status == "FINISHED"]
    keys = [r.data.tags["faithbench.run_key"] for r in runs]
    assert len(keys) == len(set(keys)), "a run key finished twice"
    with tempfile.TemporaryDirectory() as d:
        return {r.data.tags["method"]: pd.read_parquet(
            client.download_artifacts(r.info.run_id, "samples.parquet", d)) for r in runs}


def _parts(cwd: Path) -> set[Path]:
    return set((cwd / "faithbench_out" / "runs").glob("*/part-*.parquet"))


def test_sweep_killed_at_random_moments_ends_equal_to_an_uninterrupted_one(workdir, tmp_path_factory):
    ref_dir = tmp_path_factory.mktemp("reference")
    (ref_dir / "mlflow.db").write_bytes((workdir / "mlflow.db").read_bytes())
    ref = _faithbench(SWEEP, ref_dir)
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    expected = _finished(ref_dir)

    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        # Kill at a random moment right after the try has written its k-th new part
        # (k = 1 or 2 of the sweep's 10): every try is cut mid-sweep however fast the
        # machine is (a fixed sleep let a fast machine finish the sweep before the second
        # kill, and the rest of the sweep takes about a second once a part is written).
        before, k = _parts(workdir), rng.randint(1, 2)
        p = _faithbench(SWEEP, workdir)
        deadline = time.monotonic() + 300
        while p.poll() is None and len(_parts(workdir) - before) < k and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
        finished = _finished(workdir)  # nothing is marked finished before it is complete
        for method, df in finished.items():
            assert df["id"].is_unique and len(df) == 10
    assert kills >= 3
    p = _faithbench(SWEEP, workdir)
    assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    got = _finished(workdir)
    assert sorted(got) == sorted(expected) == ["grad_cam", "saliency"]
    for method in expected:
        a = got[method].sort_values("id").reset_index(drop=True)
        b = expected[method].sort_values("id").reset_index(drop=True)
        assert a["id"].is_unique and len(a) == 10
        pd.testing.assert_frame_equal(a.drop(columns=["deletion_curve"]),
                                      b.drop(columns=["deletion_curve"]))


def test_four_parallel_jobs_share_one_sqlite_store(workdir):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    p = _faithbench(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
                     "method=saliency,grad_cam", "dataset.num_shards=2", "dataset.shard=0,1",
                     "dataset.limit=6", "metrics=[pointing_game]", "figures.grid=1"], workdir)
    assert p.wait(timeout=600) == 0, p.stderr.read()[-3000:]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("faithbench").experiment_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        assert r.data.metrics["n_samples"] == 3 and "pointing_game" in r.data.metrics
        assert len(r.data.params) > 20
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"samples.parquet", "gallery.npz"}
    groups = {r.data.tags["faithbench.group_key"] for r in runs}
    assert len(groups) == 2  # one per method: the shards of a run share its group key


def test_corrupt_or_truncated_cache_entries_are_recomputed(tmp_path):
    cache = HeatmapCache(tmp_path, "ns")
    maps = torch.randn(3, 8, 8) * 1e-7
    cache.put(["a", "b", "c"], maps)
    got = cache.get(["a", "b", "c", "missing"])
    assert got[3] is None
    assert torch.equal(torch.stack(got[:3]), maps)  # stored exactly
    files = {k: cache._path(k) for k in "abc"}
    raw = files["a"].read_bytes()
    files["a"].write_bytes(raw[: len(raw) // 2])  # truncated
    flipped = bytearray(files["b"].read_bytes())
    flipped[-3] ^= 0xFF
    files["b"].write_bytes(bytes(flipped))  # one corrupted byte
    a, b, c = cache.get(["a", "b", "c"])
    assert a is None and b is None and c is not None and cache.corrupt == 2
    assert cache.size_bytes() > 0


def test_a_corrupt_cache_entry_does_not_change_the_results(workdir):
    from hydra import compose, initialize_config_module

    from faithbench.run import run

    with initialize_config_module("faithbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["dataset.limit=4", "metrics=[deletion]",
                                           "metric.deletion.step=0.25", "figures.grid=0"])
    first = run(cfg)
    entries = sorted((workdir / "faithbench_out" / "cache").rglob("*.fbh"))
    assert len(entries) == 4
    entries[0].write_bytes(entries[0].read_bytes()[:20])
    cfg.force = True
    again = run(cfg)
    assert again["deletion"] == first["deletion"]
    assert len(list((workdir / "faithbench_out" / "cache").rglob("*.fbh"))) == 4
