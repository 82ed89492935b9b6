"""faithbench.evaluate and faithbench.leaderboard: the CLI's numbers from Python."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import faithbench
from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.run import run

METRICS = ["deletion", "pointing_game"]
N, STEP = 3, 0.1  # photos scored; deletion step (fewer forwards than the default)


def _cli_frame(out_dir: Path, method: str) -> pd.DataFrame:
    """Per-sample rows of the CLI run of ``method`` on the first photos, from its parquet."""
    cfg = compose(["model=efficientnet_lite0", "dataset=photos", f"dataset.limit={N}",
                   f"method={method}", f"metrics=[{','.join(METRICS)}]", "device=cpu",
                   f"metric.deletion.step={STEP}", f"out_dir={out_dir}", "figures.grid=0",
                   "cache=false", f"tracking.uri=sqlite:///{out_dir}/mlflow.db"])
    run(cfg)
    parts = sorted(out_dir.glob("runs/*/part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def photos_frame() -> pd.DataFrame:
    return faithbench.evaluate("efficientnet_lite0", "photos", methods=["grad_cam", "saliency"],
                               metrics={"deletion": {"step": STEP}, "pointing_game": {}},
                               limit=N, device="cpu")


@pytest.mark.slow
def test_evaluate_equals_the_cli_run(photos_frame, tmp_path):
    for method in ("grad_cam", "saliency"):
        cli = _cli_frame(tmp_path / method, method).sort_values("id").reset_index(drop=True)
        ours = photos_frame[photos_frame["method"] == method].sort_values("id").reset_index(drop=True)
        assert list(ours["id"]) == list(cli["id"]) and len(cli) == N
        for col in ("target", "pred", "correct"):
            assert (ours[col].to_numpy() == cli[col].to_numpy()).all(), col
        for col in ("deletion", "pointing_game"):
            np.testing.assert_allclose(ours[col].to_numpy(float), cli[col].to_numpy(float),
                                       atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.stack(ours["deletion_curve"]), np.stack(cli["deletion_curve"]),
                                   atol=1e-6, rtol=0)
