"""Adding a method or a metric is one new Python file: a module dropped into the installed
``methods/`` and ``metrics/`` folders is listed, selectable, configurable and runs, with
no YAML and no other edit; a bad value of its typed parameter stops before any run opens.

The new files are seen by fresh processes (as a user's next ``faithbench`` call sees them),
and removed in a ``finally``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import faithbench.methods
import faithbench.metrics

METHOD = f"dropin_method_{os.getpid()}"
METRIC = f"dropin_metric_{os.getpid()}"

METHOD_SRC = f'''
"""A drop-in method: a seeded random map in [scale, 2 * scale]."""

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.params import Positive


@register(context=("seed",), cost="free")
def {METHOD}(model: nn.Module, x: Tensor, target: Tensor, *, scale: Positive = 1.0,
             seed: int | None = None) -> Tensor:
    """[B,H,W] float32 on x.device; ``seed`` is the run seed (declared context)."""
    g = torch.Generator().manual_seed(seed)
    return scale * (1 + torch.rand(x.shape[0], *x.shape[-2:], generator=g)).to(x.device)
'''

METRIC_SRC = f'''
"""A drop-in metric: the share of positive mass in the top ``share`` of the pixels."""

from typing import Literal

from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.params import Fraction


@register(higher_is_better=True)
def {METRIC}(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor, batch=None, *,
             share: Fraction = 0.25, end: Literal["top", "bottom"] = "top") -> dict[str, Tensor]:
    """Returns {{name: [B], name_share: [B] (the share used), name_min: [B] (map minimum)}}."""
    flat = heatmap.flatten(1).clamp(min=0)
    k = max(1, int(share * flat.shape[1]))
    mass = flat.topk(k, 1, largest=end == "top").values.sum(1) / flat.sum(1).clamp(min=1e-12)
    return {{"{METRIC}": mass, "{METRIC}_share": mass * 0 + share,
             "{METRIC}_min": heatmap.flatten(1).min(1).values}}
'''

# Run in a fresh interpreter: compose and run through the Python API, first with bad
# values (each must stop before a run opens), then with good ones.
SCRIPT = f'''
import json, sys
from mlflow.tracking import MlflowClient
from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.run import run

base = ["method={METHOD}", "metrics=[{METRIC}]", "dataset.limit=2", "batch_size=2",
        "device=cpu", "figures.grid=0"]
refused = []
for bad in ("metric.{METRIC}.share=0", "metric.{METRIC}.end=middle", "method.scale=-1"):
    try:
        run(compose(base + [bad]))
    except ConfigError as e:
        refused.append(str(e))
client = MlflowClient("sqlite:///mlflow.db")
exp = client.get_experiment_by_name("faithbench")
runs_after_refusals = 0 if exp is None else len(client.search_runs([exp.experiment_id]))
cfg = compose(base + ["method.scale=2.0", "metric.{METRIC}.share=0.5"])
res = run(cfg)
print(json.dumps({{"refused": refused, "runs_after_refusals": runs_after_refusals,
                  "method": dict(cfg.method), "metric": dict(cfg.metric["{METRIC}"]),
                  "results": res}}))
'''


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_dropped_in_file_is_listed_selectable_configurable_and_runs(workdir):
    files = [Path(faithbench.methods.__path__[0]) / f"{METHOD}.py",
             Path(faithbench.metrics.__path__[0]) / f"{METRIC}.py"]
    if not all(os.access(f.parent, os.W_OK) for f in files):
        pytest.skip("the installed package folders are read-only here")
    try:
        files[0].write_text(textwrap.dedent(METHOD_SRC))
        files[1].write_text(textwrap.dedent(METRIC_SRC))

        out = _run([sys.executable, "-m", "faithbench", "list", "methods", "metrics"], workdir)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.startswith("  ")}
        assert "stochastic=True, cost=free, model_free=True" in lines[METHOD]  # derived flags
        assert "higher_is_better=True" in lines[METRIC]

        out = _run([sys.executable, "-m", "faithbench", "--help"], workdir)
        assert out.returncode == 0, out.stderr[-3000:]
        assert METHOD in out.stdout.split("\nmethod: ")[1].split("\n")[0]
        # metrics are a list (metrics=[...]), not a group choice: `list metrics` shows them

        out = _run([sys.executable, "-c", SCRIPT], workdir)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for f in files:
            f.unlink(missing_ok=True)
            for pyc in (f.parent / "__pycache__").glob(f"{f.stem}.*.pyc"):
                pyc.unlink()
    assert not any(f.exists() for f in files)

    # A bad value of a typed parameter stops with the value and what is valid, no run opened.
    assert got["refused"] == [
        f"metric '{METRIC}': share=0 is out of range; valid: (0, 1]",
        f"metric '{METRIC}': unknown end 'middle'. Valid choices: bottom, top.",
        f"method '{METHOD}': scale=-1 is out of range; valid: (0, inf)",
    ]
    assert got["runs_after_refusals"] == 0
    # The generated nodes hold the signature defaults; the overrides reach the functions.
    assert got["method"] == {"name": METHOD, "scale": 2.0, "seed": None}
    assert got["metric"] == {"name": METRIC, "share": 0.5, "end": "top"}
    res = got["results"]
    assert res["n_samples"] == 2
    assert res[f"{METRIC}_share"] == 0.5
    assert res[f"{METRIC}_min"] >= 2.0  # maps in [scale, 2 * scale] with scale=2
    assert 0.5 <= res[METRIC] <= 1.0  # the top half of the pixels holds at least half the mass
