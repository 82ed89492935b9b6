"""Shard grouping, completeness and overlap checks, and row labels, on fabricated runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from faithbench.errors import ConfigError
from faithbench.report.merge import group_runs, label_groups, load_frame
from faithbench.report.runs import RunInfo, filter_string


def run(rid: str, shard: str = "0/1", group: str = "g", method: str = "m", t: int = 0,
        **params: str) -> RunInfo:
    tags = {"model": "net", "method": method, "dataset": "d", "shard": shard,
            "faithbench.group_key": group}
    return RunInfo(rid, "1", t, tags, {"metrics": "['a']", **params})


class FakeStore:
    def __init__(self, frames: dict[str, pd.DataFrame], root: Path) -> None:
        self.paths = {}
        for rid, df in frames.items():
            self.paths[rid] = root / f"{rid}.parquet"
            df.to_parquet(self.paths[rid])

    def get(self, r: RunInfo, name: str) -> Path | None:
        return self.paths.get(r.run_id)


def rows(idx: list[int], status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame({"id": [f"s{i}" for i in idx], "image_id": [f"s{i}" for i in idx],
                         "index": idx, "target": [i % 2 for i in idx], "pred": 0, "correct": True,
                         "status": status, "a": [float(i) for i in idx]})


def test_complete_shards_group_and_incomplete_ones_are_reported():
    problems: list[str] = []
    runs = [run("a0", "0/3"), run("a2", "2/3"), run("a1", "1/3"),
            run("b0", "0/2", group="h"), run("c0", "0/2", group="k"), run("c1", "1/3", group="k")]
    groups = group_runs(runs, problems)
    assert [(g.key, [r.run_id for r in g.runs]) for g in groups] == [("g", ["a0", "a1", "a2"])]
    assert any("group h" in p and "shards [1] of 2 are not finished" in p for p in problems)
    assert any("group k" in p and "different counts [2, 3]" in p for p in problems)


def test_a_shard_finished_twice_keeps_the_newer_run():
    groups = group_runs([run("old", "0/1", t=1), run("new", "0/1", t=2)], [])
    assert [r.run_id for r in groups[0].runs] == ["new"]


def test_merged_rows_are_in_canonical_order_and_overlaps_are_refused(tmp_path):
    store = FakeStore({"a0": rows([0, 3, 6]), "a1": rows([1, 4]), "a2": rows([5, 2, 7], "ok"),
                       "x0": rows([0, 1]), "x1": rows([1, 2])}, tmp_path)
    problems: list[str] = []
    (g,) = group_runs([run("a0", "0/3"), run("a1", "1/3"), run("a2", "2/3")], problems)
    df = load_frame(g, store, problems)  # type: ignore[arg-type]
    assert df["index"].tolist() == list(range(8)) and not problems
    pd.testing.assert_frame_equal(df, rows(list(range(8))), check_dtype=False)
    (h,) = group_runs([run("x0", "0/2", group="x"), run("x1", "1/2", group="x")], problems)
    assert load_frame(h, store, problems) is None  # type: ignore[arg-type]
    assert "shards overlap on 1 samples (e.g. 's1')" in problems[0]


def test_unreadable_rows_are_dropped(tmp_path):
    bad = rows([1], "unreadable")
    store = FakeStore({"a": pd.concat([rows([0]), bad, rows([2])])}, tmp_path)
    (g,) = group_runs([run("a")], [])
    assert load_frame(g, store, [])["id"].tolist() == ["s0", "s2"]  # type: ignore[arg-type,index]


def test_labels_tell_differing_configs_apart_and_combine_metric_lists(tmp_path):
    a = run("a", group="g1", t=1, **{"method.layer": "l3", "device": "cpu"})
    b = run("b", group="g2", t=2, **{"method.layer": "l4", "device": "cuda"})
    groups = group_runs([a, b], [])
    for g in groups:
        g.frame = rows([0, 1])
    assert sorted(g.label for g in label_groups(groups)) == ["m (layer=l3)", "m (layer=l4)"]
    c = run("c", group="g3", t=1, **{"metrics": "['a']", "device": "cpu"})
    d = run("d", group="g4", t=2, **{"metrics": "['b']", "device": "cuda"})
    groups = group_runs([c, d], [])
    groups[0].frame = rows([0, 1])
    groups[1].frame = rows([0, 1]).rename(columns={"a": "b"}).assign(b=[5.0, 6.0])
    (one,) = label_groups(groups)
    assert one.label == "m" and one.frame["a"].tolist() == [0.0, 1.0] and one.frame["b"].tolist() == [5.0, 6.0]


def test_filter_string_quotes_values_and_selects_finished_runs(tmp_path):
    f = filter_string({"model": "it's"}, str(tmp_path))
    assert f.startswith("attributes.status = 'FINISHED'")
    assert "tags.`model` = \"it's\"" in f and f"LIKE '{tmp_path.resolve()}%'" in f
    # what MLflow finds with them: a backslash before a quote is read literally
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path / 'q.db'}")
    exp = c.create_experiment("q")
    for value in ("it's", 'say "hi"', "plain"):
        c.set_terminated(c.create_run(exp, tags={"model": value}).info.run_id)
    for value in ("it's", 'say "hi"', "plain"):
        found = c.search_runs([exp], filter_string({"model": value}, None))
        assert [r.data.tags["model"] for r in found] == [value]
    with pytest.raises(ConfigError, match="both kinds of quotes"):
        filter_string({"model": "it's \"x\""}, None)
