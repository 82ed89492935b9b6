"""Speed of what surrounds the jobs: per-job overhead of a sweep, reruns that skip
finished jobs, reports over many runs, and the describing commands.

Every figure is measured in a fresh temporary working directory (its own SQLite store,
``out_dir`` and registry index), with the installed ``faithbench``:

1. overhead: ``faithbench -m <sweep>`` (default: the README's main job, ``experiment=quick``)
   wall time over the summed ``seconds`` of its runs (each job's own compute, as logged),
   into a new store (MLflow's blank store, which a machine builds once, is built first
   and timed apart);
2. rerun: the same command again, every job finished (wall time, seconds per job); with
   ``--rerun-jobs N``, also the rerun of a sweep of N cheap jobs (``method=random``, one
   image, the pointing game);
3. report: ``faithbench report`` over the sweep's runs (with and without figures, and a
   second time, reading the artifact cache), and over ``--synthetic`` runs logged
   directly into a fresh store (small per-sample frames, 2 metrics, 25 methods per
   (model, dataset) pair), tables only and then the default report (every format,
   figures, tests against a control);
4. ``faithbench list`` and ``faithbench --help`` (median of 3, after one call that
   builds the registry index).

    python scripts/bench_sweep.py                        # about 10 minutes on 2 CPU cores
    python scripts/bench_sweep.py --sweep "method=grad_cam,saliency dataset.limit=8" --synthetic 200
    python scripts/bench_sweep.py --json sweep.json
    python scripts/bench_sweep.py --synthetic 0 --rerun-jobs 1000   # reruns at scale

Timings on a shared machine are noisy; the ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"overhead_ratio": 1.10, "rerun_40_s": 5.0, "rerun_1000_s": 30.0, "report_40_s": 10.0,
           "report_1000_s": 60.0, "list_s": 1.5, "help_s": 1.5}


CPU: dict[str, float] = {}  # CPU seconds (user + system) of the last call of each command


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of ``faithbench <args>`` (its CPU seconds go to ``CPU``: on a loaded
    machine they show what the command costs better than the wall time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "faithbench", *args], cwd=cwd, env=env,
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[args[0]] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"faithbench {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return dt, p


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "FAITHBENCH_CACHE_DIR": str(work / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def summed_job_seconds(uri: str) -> tuple[float, int]:
    """Sum of the ``seconds`` metric of the finished benchmark runs in ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("faithbench")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              max_results=50_000)
    secs = [r.data.metrics["seconds"] for r in runs if "seconds" in r.data.metrics]
    return float(sum(secs)), len(secs)


def log_synthetic_runs(uri: str, n_runs: int, n_samples: int = 16, methods_per_pair: int = 25,
                       seed: int = 0) -> None:
    """``n_runs`` finished benchmark runs in ``uri`` as the runner logs them (identity
    tags, group and run keys, ``metrics`` and ``seed`` params, n_samples, and a
    ``samples.parquet`` of ``n_samples`` rows with ``deletion`` and ``insertion``
    values): ``methods_per_pair`` methods per (model, dataset) pair. A SQLite store's
    artifacts go next to its file (MLflow's default root is the working directory)."""
    import numpy as np
    from mlflow.tracking import MlflowClient

    from faithbench.stores import sqlite_file
    from faithbench.tracking import Tracker

    tracker = Tracker(uri, "faithbench")
    client = MlflowClient(uri)
    db = sqlite_file(uri)
    if db is not None and client.get_experiment_by_name("faithbench") is None:
        client.create_experiment("faithbench", artifact_location=(db.parent / "mlruns").resolve().as_uri())
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="synthetic-runs-") as d:
        _log_runs(client, tracker.experiment_id, Path(d), n_runs, n_samples, methods_per_pair, rng)


def _log_runs(client: Any, experiment_id: str, tmp: Path, n_runs: int, n_samples: int,
              methods_per_pair: int, rng: Any) -> None:
    import numpy as np
    import pandas as pd
    from mlflow.entities import Metric, Param, RunTag

    from faithbench import schema

    ids = [f"img/{i}" for i in range(n_samples)]
    for r in range(n_runs):
        pair, m = divmod(r, methods_per_pair)
        model, dataset, method = f"model_{pair}", "shapes", f"method_{m:02d}"
        quality = m / methods_per_pair  # methods differ, so the rank tests have work to do
        df = pd.DataFrame({
            "id": ids, "image_id": ids, "index": np.arange(n_samples),
            "target": np.zeros(n_samples, np.int64), "pred": np.zeros(n_samples, np.int64),
            "status": ["ok"] * n_samples, "correct": np.ones(n_samples, bool),
            "deletion": (rng.random(n_samples) * (1 - quality)).astype(np.float32),
            "insertion": (rng.random(n_samples) * quality).astype(np.float32)})
        path = tmp / "samples.parquet"
        df.to_parquet(path, index=False)
        key = f"{r:016x}"
        run = client.create_run(experiment_id, run_name=f"{model}/{method}/{dataset}", tags={
            schema.RUN_KEY: key, schema.GROUP_KEY: key, schema.MODEL: model,
            schema.METHOD: method, schema.DATASET: dataset, schema.SHARD: schema.WHOLE,
            "seed": "0", "target": "label"})
        rid = run.info.run_id
        client.log_batch(rid, params=[Param("metrics", "['deletion', 'insertion']"),
                                      Param("seed", "0")],
                         metrics=[Metric("n_samples", float(n_samples), 0, 0)],
                         tags=[RunTag("faithbench.synthetic", "true")])
        client.log_artifact(rid, str(path))
        client.set_terminated(rid, "FINISHED")


def _main_sweep(sweep: str, reps: int, res: dict[str, Any]) -> None:
    """Items 1-4 over the sweep ``sweep`` (in ``res``)."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as d:
        work = Path(d)
        env = _env(work)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        args = ["-m", *shlex.split(sweep)]
        # 4. the describing commands (a first call builds the registry index)
        _cli(["list"], work, env)
        _cli(["--help"], work, env)
        res["list_s"] = statistics.median(_cli(["list"], work, env)[0] for _ in range(reps))
        res["list_cpu_s"] = CPU["list"]
        res["help_s"] = statistics.median(_cli(["--help"], work, env)[0] for _ in range(reps))
        res["help_cpu_s"] = CPU["--help"]
        print(f"list {res['list_s']:.2f} s ({res['list_cpu_s']:.2f} s CPU), --help "
              f"{res['help_s']:.2f} s ({res['help_cpu_s']:.2f} s CPU)", flush=True)
        # a new SQLite store is a copy of MLflow's blank store, built once per cache
        # directory (faithbench.tracking.seed_sqlite): built here, timed apart
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from faithbench import tracking; tracking.blank_sqlite()"],
                       cwd=work, env=env, check=True, capture_output=True)
        res["blank_store_s"] = time.perf_counter() - t
        print(f"MLflow's blank SQLite store, built once per cache directory: "
              f"{res['blank_store_s']:.1f} s (not in the sweep's time)", flush=True)
        # 1. per-job overhead
        wall, _ = _cli(args, work, env)
        jobs_s, n = summed_job_seconds(uri)
        res.update(sweep_wall_s=wall, sweep_jobs=n, sweep_job_seconds=jobs_s,
                   overhead_ratio=wall / jobs_s, overhead_per_job_s=(wall - jobs_s) / n)
        print(f"sweep: {n} jobs, {wall:.1f} s wall, {jobs_s:.1f} s in the jobs: ratio "
              f"{wall / jobs_s:.3f} ({(wall - jobs_s) / n:.2f} s per job outside)", flush=True)
        # 2. rerun: every job finished
        reruns = [_cli(args, work, env)[0] for _ in range(reps)]
        res.update(rerun_s=statistics.median(reruns), rerun_per_job_s=statistics.median(reruns) / n,
                   rerun_cpu_s=CPU["-m"])
        print(f"rerun: {res['rerun_s']:.1f} s ({res['rerun_per_job_s']:.3f} s per job, "
              f"{res['rerun_cpu_s']:.1f} s CPU)", flush=True)
        # 3. reports over the sweep's runs
        rep = ["report", "--no-mlflow", "--out", str(work / "rep")]
        res["report_s"], _ = _cli(rep, work, env)
        res["report_again_s"], _ = _cli(rep, work, env)
        res["report_no_figures_s"] = statistics.median(
            _cli([*rep, "--no-figures"], work, env)[0] for _ in range(reps))
        print(f"report over {n} runs: {res['report_s']:.1f} s first, {res['report_again_s']:.1f} s "
              f"again (artifact cache), {res['report_no_figures_s']:.1f} s without figures", flush=True)


def measure(sweep: str, synthetic: int, reps: int, rerun_jobs: int = 0) -> dict[str, Any]:
    res: dict[str, Any] = {"sweep": sweep, "machine": f"{os.cpu_count()} CPUs",
                           "load_before": os.getloadavg()[0]}
    if sweep:  # '' skips the main sweep (and items 1, 3 and 4 with it)
        _main_sweep(sweep, reps, res)
    if rerun_jobs:  # 2. at scale: a sweep of cheap real jobs, then its rerun
        with tempfile.TemporaryDirectory(prefix="bench-rerun-") as d:
            work = Path(d)
            env = _env(work)
            args = ["-m", "method=random", f"seed=range(0,{rerun_jobs})", "dataset.limit=1",
                    "metrics=[pointing_game]", "figures.grid=0"]
            res["rerun_sweep_s"], _ = _cli(args, work, env)
            res["rerun_jobs"] = rerun_jobs
            res["rerun_many_s"], p = _cli(args, work, env)
            res["rerun_many_cpu_s"] = CPU["-m"]
            # every job skipped by the sweeper, none composed
            res["rerun_many_all_skipped"] = f"{rerun_jobs} of {rerun_jobs} jobs finished already" \
                in p.stdout + p.stderr
            print(f"rerun of {rerun_jobs} finished jobs: {res['rerun_many_s']:.1f} s "
                  f"({res['rerun_many_cpu_s']:.1f} s CPU; the sweep itself took "
                  f"{res['rerun_sweep_s']:.0f} s)", flush=True)
    if synthetic:
        with tempfile.TemporaryDirectory(prefix="bench-synthetic-") as d:
            work = Path(d)
            env = _env(work)
            t = time.perf_counter()
            log_synthetic_runs(f"sqlite:///{work / 'mlflow.db'}", synthetic)
            res["synthetic_runs"], res["synthetic_log_s"] = synthetic, time.perf_counter() - t
            rep = ["report", "--no-mlflow", "--no-figures", "--control=", "--win=",
                   "--formats", "csv,md", "--out", str(work / "rep")]
            res["report_synthetic_s"], _ = _cli(rep, work, env)
            res["report_synthetic_again_s"], _ = _cli(rep, work, env)
            print(f"report over {synthetic} synthetic runs (no figures): "
                  f"{res['report_synthetic_s']:.1f} s first, {res['report_synthetic_again_s']:.1f} s "
                  "again", flush=True)
            # the default report: every format, figures, tests against a control
            full = ["report", "--no-mlflow", "--control", "method_00", "--out", str(work / "full")]
            res["report_synthetic_figures_s"], _ = _cli(full, work, env)
            print(f"report over {synthetic} synthetic runs, every format and figure: "
                  f"{res['report_synthetic_figures_s']:.1f} s", flush=True)
    res["load_after"] = os.getloadavg()[0]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", default="experiment=quick",
                   help="overrides of the timed sweep ('': none, for --rerun-jobs or --synthetic alone)")
    p.add_argument("--synthetic", type=int, default=1000, help="runs of the synthetic report (0: none)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rerun-jobs", type=int, default=0,
                   help="also time the rerun of a sweep of this many cheap finished jobs (1000: "
                        "the sweep itself takes about 10-15 minutes on 2 CPU cores)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    res = measure(a.sweep, a.synthetic, a.reps, a.rerun_jobs)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
