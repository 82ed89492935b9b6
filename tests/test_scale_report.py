"""A report over 1,000 runs: logged synthetically into a fresh SQLite store (small
per-sample frames, as the runner logs them), built, and built again without one
download (a local store's artifacts are read where they are). The time is checked by scripts/bench_sweep.py, not here."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from faithbench.report.build import Options, build

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_sweep.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _report(uri: str, out: Path):
    return build(Options(tracking_uri=uri, out=out, figures=False, control=None, win=None,
                         log_mlflow=False, formats=("csv",), n_resamples=100, seed=0))


@pytest.mark.slow
def test_report_over_a_thousand_synthetic_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the runs' artifacts go under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _script().log_synthetic_runs(uri, 1000, n_samples=8)
    rep = _report(uri, tmp_path / "rep")
    assert len(rep.sections) == 40 and not rep.problems
    assert all(len(s.board.labels) == 25 for s in rep.sections)
    # every leaderboard mean is the mean of its run's per-sample values
    client = MlflowClient(uri)
    cells = pd.concat([s.board.cells for s in rep.sections], ignore_index=True)
    runs = client.search_runs([client.get_experiment_by_name("faithbench").experiment_id],
                              "tags.method = 'method_07'", max_results=100)
    assert len(runs) == 40
    for r in runs[:5]:
        df = pd.read_parquet(client.download_artifacts(r.info.run_id, "samples.parquet",
                                                       tempfile.mkdtemp(dir=tmp_path)))
        board = next(s.board for s in rep.sections if s.board.model == r.data.tags["model"])
        c = board.cells
        row = c[(c["label"] == "method_07") & (c["key"] == "deletion")]
        assert row["mean"].item() == pytest.approx(df["deletion"].astype(float).mean(), rel=1e-6)
    # a second report downloads nothing either
    def no_download(*a, **k):
        raise AssertionError("artifact downloaded again")

    monkeypatch.setattr(MlflowClient, "download_artifacts", no_download)
    again = _report(uri, tmp_path / "rep2")
    pd.testing.assert_frame_equal(
        pd.concat([s.board.cells for s in again.sections], ignore_index=True), cells)
