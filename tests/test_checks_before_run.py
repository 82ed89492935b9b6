"""Constraints the deleted YAML files stated in comments are declared checks now, so a
config that breaks one stops before any MLflow run is opened (not inside the method)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.run import run


@pytest.mark.parametrize("overrides, message", [
    # baseline: zero | blur | uniform | a number
    (["method=integrated_gradients", "method.baseline=zeros"],
     r"method 'integrated_gradients': unknown baseline 'zeros'\. Did you mean 'zero'\?"),
    # base: any registered method
    (["method=smooth_grad", "method.base=salency"],
     r"method 'smooth_grad': base='salency' is not a registered method: .*Did you mean 'saliency'\?"),
    (["method=smooth_grad", "method.base=smooth_grad"],
     r"method 'smooth_grad': base='smooth_grad' would make 'smooth_grad' wrap itself"),
    # stride: px, at most window
    (["method=occlusion", "method.stride=20"],
     r"method 'occlusion': stride=20 is out of range for window=16; valid: \[1, window\]"),
    # explain: filled by the runner
    (["metrics=[max_sensitivity]", "metric.max_sensitivity.explain=mine"],
     r"metric 'max_sensitivity': explain='mine' cannot be set; the runner fills explain"),
])
def test_a_documented_constraint_stops_before_any_run_opens(workdir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(compose(overrides + ["dataset.limit=2", "device=cpu"]))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])
