"""The command line and the Hydra configs, on tiny real jobs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient

from faithbench import methods
from faithbench.errors import ConfigError
from faithbench.run import run


def _compose(overrides: list[str]):
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faithbench", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_composed_default_config_runs_the_real_slice(workdir):
    cfg = _compose(["dataset.limit=4", "batch_size=4", "figures.grid=2"])
    assert (cfg.model.name, cfg.method.name, cfg.dataset.name) == ("shapes_cnn", "grad_cam", "shapes")
    res = run(cfg)
    for m in ("deletion", "insertion", "pointing_game"):
        assert res[f"{m}_ci_low"] <= res[m] <= res[f"{m}_ci_high"]
    assert res["n_samples"] == 4


def test_every_experiment_preset_composes():
    from importlib import resources

    exp = resources.files("faithbench.conf") / "experiment"
    for f in exp.iterdir():
        if f.name.endswith(".yaml"):
            _compose([f"experiment={f.name[:-5]}"])


def test_quick_preset_covers_every_method():
    """The README's main job grows with the registry (adapters to optional peers aside)."""
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=quick"], return_hydra_config=True)
    swept = set(cfg.hydra.sweeper.params.method.split(","))
    optional = {"captum", "pytorch_grad_cam", "zennit"}
    # methods for some models only (the attention methods: ViTs) do not fit its CNN pairs
    narrow = {n for n in methods.names() if methods.get(n).info.models not in ("any", "cnn")}
    oracles = {n for n in methods.names() if methods.get(n).info.oracle}  # references, not methods
    assert swept == set(methods.names()) - optional - narrow - oracles


def test_incompatible_pair_is_a_clear_error(workdir):
    cfg = _compose(["dataset=photos"])
    with pytest.raises(ConfigError, match="'shapes_cnn' predicts 'shapes' classes but dataset 'photos'"):
        run(cfg)


def test_cli_list_help_and_bad_names(workdir):
    out = _cli("list", cwd=workdir)
    assert out.returncode == 0
    for name in ("grad_cam", "saliency", "deletion", "pointing_game", "shapes", "photos",
                 "shapes_cnn", "efficientnet_lite0", "quick"):
        assert name in out.stdout
    out = _cli("--help", cwd=workdir)
    assert out.returncode == 0 and "faithbench list" in out.stdout and "method: " in out.stdout
    out = _cli("method=gradcam", cwd=workdir)
    assert out.returncode != 0 and "gradcam" in out.stderr and "grad_cam" in out.stderr
    out = _cli("metrics=[deletion,nope]", "dataset.limit=2", cwd=workdir)
    assert out.returncode == 2
    assert "unknown metric 'nope'" in out.stderr and "Valid choices:" in out.stderr
    assert "Traceback" not in out.stderr
    out = _cli("dataset=photos", cwd=workdir)
    assert out.returncode == 2 and "pick a matching pair" in out.stderr


def test_cli_sweep_prints_table_skips_impossible_pairs_and_lists_failures(workdir):
    out = _cli("-m", "model=shapes_cnn", "dataset=shapes,photos", "method=grad_cam,saliency",
               "dataset.limit=3", "batch_size=3", "metrics=[deletion,pointing_game]",
               "metric.deletion.step=0.25", "figures.grid=0", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 jobs skipped" in out.stdout
    table = out.stdout[re.search(r"^\s*model\s+method\s+dataset", out.stdout, re.M).start():]
    assert table.count("shapes_cnn") == 2
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["grad_cam", "saliency"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert f"{r.data.metrics['deletion']:.4f}" in table  # the printed table matches MLflow
    # a sweep with one bad job still runs the others and ends non-zero, listing it
    out = _cli("-m", "method=grad_cam,saliency", "method.bogus=1", "dataset.limit=2",
               "metrics=[pointing_game]", "figures.grid=0", cwd=workdir)
    assert out.returncode != 0
    out = _cli("-m", "dataset.limit=2,-1", "metrics=[pointing_game]", "figures.grid=0",
               cwd=workdir)
    assert out.returncode == 1
    assert "1 of 2 jobs failed" in out.stderr and "dataset.limit=-1" in out.stderr
    summaries = [json.loads(p.read_text()) for p in (workdir / "faithbench_out").rglob("summary.json")]
    assert {s["status"] for s in summaries} >= {"ok", "failed", "skipped"}


@pytest.mark.parametrize("launcher,target", [
    ("slurm", "SlurmLauncher"), ("local_gpus", "JoblibLauncher")])
def test_launcher_presets_compose(launcher, target):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.array_parallelism == 64


def test_cli_exits_without_teardown_after_flushing_its_output(workdir):
    """The command ends with os._exit after the exit handlers (faithbench.cli._exit_now):
    exit status 0, its log file and its output complete; a sweep's table printed."""
    args = ["method=random", "dataset.limit=2", "metrics=[pointing_game]", "figures.grid=0"]
    p = _cli(*args, cwd=workdir)
    assert p.returncode == 0, p.stderr[-2000:]
    (log,) = workdir.glob("faithbench_out/hydra/*/*/cli.log")
    assert "shapes_cnn/random/shapes: pointing_game " in log.read_text().splitlines()[-1]
    p = _cli("-m", *args, cwd=workdir)
    assert p.returncode == 0 and "shapes_cnn" in p.stdout.splitlines()[-1]
    # the subcommands too, with their own exit status
    p = _cli("report", "--no-mlflow", "--no-figures", "--out", "rep", cwd=workdir)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[-1].endswith("leaderboard.csv") and (workdir / "rep" / "report.md").exists()
    p = _cli("report", "--formats", "nope", cwd=workdir)
    assert p.returncode == 2 and "nope" in p.stderr
    p = _cli("list", "methods", cwd=workdir)
    assert p.returncode == 0 and "grad_cam" in p.stdout
