"""What makes a rerun of a sweep fast, without changing what it skips: the run key is
known before the dataset is built, and finished keys are read in one query."""

from __future__ import annotations

import dataclasses

import pytest
import toys
from omegaconf import OmegaConf

from faithbench import datasets, tracking
from faithbench.run import apply_method_params, job_key, prepare, run


@pytest.fixture
def cfg(workdir):
    with toys.toy_entries():
        yield OmegaConf.create(dict(
            model={"name": "toy_model"}, method={"name": "toy_method", "scale": 1.0},
            dataset={"name": "toy_data", "n": 10, "broken": [3], "shard": 0, "num_shards": 1,
                     "limit": None, "subset_seed": None},
            metric={"toy_metric": {"k": 4}}, metrics=["toy_metric"], target="label", seed=0,
            device="cpu", batch_size=3, num_workers=0, part_size=4, force=False, cache=True,
            out_dir="out", tracking={"uri": None, "experiment": "t"}, figures={"grid": 0}))


def test_job_key_is_the_prepared_runs_key(cfg):
    for scale in (1.0, 2.0):
        cfg.method.scale = scale
        c = apply_method_params(cfg)
        assert job_key(c) == prepare(c).key


def test_finished_job_is_skipped_without_building_its_dataset(cfg, monkeypatch):
    first = run(cfg)
    entry = datasets.DATASETS._entries["toy_data"]

    def boom(*a, **k):
        raise AssertionError("dataset built for a finished job")

    monkeypatch.setitem(datasets.DATASETS._entries, "toy_data", dataclasses.replace(entry, fn=boom))
    assert run(cfg) == pytest.approx(first, nan_ok=True)  # the logged numbers, read back
    cfg.method.scale = 2.0  # not finished: built (and here it fails)
    with pytest.raises(AssertionError, match="dataset built"):
        run(cfg)


def test_finished_keys_are_read_in_one_query(cfg, monkeypatch):
    results = {}
    for scale in (1.0, 2.0, 3.0):
        cfg.method.scale = scale
        results[scale] = run(cfg)
    monkeypatch.setattr(tracking, "_TRACKERS", {})  # a new process
    calls = []
    real = tracking.MlflowClient.search_runs

    def counted(self, *a, **k):
        calls.append(a[1] if len(a) > 1 else k.get("filter_string"))
        return real(self, *a, **k)

    monkeypatch.setattr(tracking.MlflowClient, "search_runs", counted)
    for scale in (1.0, 2.0, 3.0):
        cfg.method.scale = scale
        assert run(cfg)["toy_metric"] == pytest.approx(results[scale]["toy_metric"])
    # the first job looks its key up alone, the second reads every finished key, the
    # third needs no query
    assert len(calls) == 2 and "FINISHED" in calls[1], calls
