"""The record schema and the metrics' own aggregations: names built and parsed in one
module, and the aggregation the runner logs with is the one the report reads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faithbench import metrics, schema
from faithbench.aggregate import CLASS_MEAN, MEAN, Aggregation
from faithbench.metrics.localisation import CURVE_MAX
from faithbench.report.board import key_info
from faithbench.types import MetricInfo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("i,n", [(0, 1), (3, 4), (11, 12)])
def test_shard_tag_round_trips(i: int, n: int) -> None:
    assert schema.shard_tag(i, n) == f"{i}/{n}"
    assert schema.parse_shard(schema.shard_tag(i, n)) == (i, n)


def test_derived_names_round_trip() -> None:
    assert schema.curve_base(schema.curve_key("deletion")) == "deletion"
    assert schema.is_curve("deletion_curve") and not schema.is_curve("deletion_curve_x")
    assert schema.x_key("deletion_curve") == "deletion_curve_x"
    assert schema.point_prefix(schema.point_keys("pointing_game")[0]) == "pointing_game"
    assert schema.box_prefix(schema.box_keys("box_localisation")[0]) == "box_localisation"
    assert schema.vector_prefix("a_box", schema.BOX) == "a" and schema.vector_prefix("a", schema.BOX) is None
    with pytest.raises(ValueError, match="valid: ci_low"):
        schema.stat_key("deletion", "median")


def test_stat_record_is_what_the_runner_documents() -> None:
    rec = schema.stat_record("pg", {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 3, "classes": 2})
    assert rec == {"pg": 0.5, "pg_ci_low": 0.4, "pg_ci_high": 0.6, "pg_n": 3.0, "pg_classes": 2.0}
    assert "pg_classes" not in schema.stat_record("pg", {"mean": 0, "ci_low": 0, "ci_high": 0, "n": 1})


def test_metrics_declare_their_aggregation() -> None:
    assert metrics.get("pointing_game").info.aggregate is CLASS_MEAN
    assert metrics.get("max_box_acc").info.aggregate is CURVE_MAX
    assert metrics.get("deletion").info.aggregate is MEAN
    for name in metrics.names():
        info = metrics.get(name).info
        assert isinstance(info.aggregate, Aggregation)
        assert info.describe()["aggregate"] == info.aggregate.name
        # the report summarises a score with the very object the runner logs with
        assert key_info(name, [name]).aggregation is info.aggregate  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="'class_mean' is not an Aggregation"):
        MetricInfo(higher_is_better=True, aggregate="class_mean")  # type: ignore[arg-type]


def test_aggregations_against_their_definitions() -> None:
    rng = np.random.default_rng(0)
    v = rng.random(40)
    v[3] = np.nan
    t = rng.integers(0, 4, 40)
    curve = (rng.random((40, 7)) > 0.5).astype(float)
    frame = pd.DataFrame({"target": t, "s": v, "s_curve": list(curve)})
    assert MEAN(frame, "s", 200)["mean"] == pytest.approx(np.nanmean(v), abs=1e-12)
    ok = ~np.isnan(v)
    per_class = [v[ok & (t == c)].mean() for c in np.unique(t[ok])]
    got = CLASS_MEAN(frame, "s", 200)
    assert got["mean"] == pytest.approx(np.mean(per_class), abs=1e-12) and got["classes"] == len(per_class)
    got = CURVE_MAX(frame, "s", 200)
    assert got["mean"] == pytest.approx(curve.mean(0).max(), abs=1e-12) and got["n"] == 40
    assert got["ci_low"] <= got["mean"] <= got["ci_high"]
    assert np.isnan(CURVE_MAX(frame.drop(columns="s_curve"), "s", 200)["mean"])


def test_no_record_name_is_spelled_outside_the_schema() -> None:
    """Tag keys and suffixes are written as string literals only in faithbench.schema
    (docstrings may name them in backquotes)."""
    spelled = re.compile(r"""["'](faithbench\.(run_key|group_key|sweep|superseded|kind)|"""
                         r"""_curve|_ci_low|_ci_high|_classes|_x|_y|_box|_point|_x0)["']|"""
                         r"""endswith\(["']_""")
    # built by f-string on the runner / report side (a metric names its own outputs)
    built = re.compile(r"""\}(_curve|_ci_low|_ci_high|_classes|_n|_x|_y|_box|_point)["']""")
    bad = []
    for folder in ("bench", "metrics"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            if p.name == "schema.py":
                continue
            bad += [f"{p.relative_to(ROOT)}:{i}" for i, line in enumerate(p.read_text().splitlines(), 1)
                    if spelled.search(line) or folder == "bench" and built.search(line)]
    assert not bad, bad
