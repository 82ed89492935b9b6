"""The shared job pieces: the tracked-run lifecycle (statuses read back from MLflow), the
bounded model cache, and typed settings that scoring and artifacts read instead of cfg."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

import toys
from faithbench import artifacts
from faithbench.jobs import JobSettings, ModelCache, tracked_job
from faithbench.config import run_key
from faithbench.run import aggregate, prepare, score_parts, tracking_tags
from faithbench.tracking import Tracker


def _status(workdir, run_id: str) -> str:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).info.status


def test_tracked_job_finishes_killed_failed_and_reopens(workdir):
    tracker = Tracker(None, "t")
    with tracked_job(tracker, "k1", "ok", {}) as ok:
        pass
    assert _status(workdir, ok) == "FINISHED"
    ids = {}
    for key, exc, status in (("k2", KeyboardInterrupt, "KILLED"), ("k3", ValueError, "FAILED")):
        with pytest.raises(exc):  # re-raised, not swallowed
            with tracked_job(tracker, key, key, {}) as ids[key]:
                raise exc()
        assert _status(workdir, ids[key]) == status
    assert tracker.find("k3").info.run_id == ids["k3"]
    with tracked_job(tracker, "k3", "k3", {"x": "1"}, reopen=ids["k3"]) as again:
        assert _status(workdir, again) == "RUNNING"
    assert again == ids["k3"] and _status(workdir, again) == "FINISHED"


def test_a_run_started_here_logs_params_and_artifacts_without_reading_it_back(workdir, tmp_path):
    tracker = Tracker(None, "t")
    files = []
    for name, data in (("a.parquet", b"\x00\x01" * 500), ("b.png", b"png"), ("c.csv", b"x,y\n")):
        files.append(tmp_path / "made" / name)
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(data)
    folder = tmp_path / "made" / "views"
    folder.mkdir()
    (folder / "v.txt").write_text("v")
    with tracked_job(tracker, "k", "fresh", {}) as run_id:
        store = tracker.client._client._tracking_client.store  # what any read of the run goes to
        read = store.get_run
        store.get_run = lambda *a: pytest.fail("read the run back")
        try:
            tracker.log_params(run_id, {"a": 1, "b": "two"})
            tracker.log_artifacts(run_id, [*files, folder])
        finally:
            store.get_run = read
    again = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    run = again.get_run(run_id)
    assert run.data.params == {"a": "1", "b": "two"} and run.info.status == "FINISHED"
    assert sorted(a.path for a in again.list_artifacts(run_id)) == ["a.parquet", "b.png", "c.csv", "views"]
    for f in [*files, folder / "v.txt"]:  # the same bytes as MLflow's own copy
        name = f.name if f.parent.name == "made" else f"views/{f.name}"
        assert Path(again.download_artifacts(run_id, name, str(tmp_path / "back"))).read_bytes() \
            == f.read_bytes()
    # a reopened run (not started by this tracker) is read back: its params are kept
    other = Tracker(None, "t")
    with tracked_job(other, "k", "fresh", {}, reopen=run_id):
        other.log_params(run_id, {"a": 99, "c": 3})
        other.log_artifacts(run_id, files[:1])
    assert again.get_run(run_id).data.params == {"a": "1", "b": "two", "c": "3"}


def test_metrics_hold_the_scorer_weakly_so_a_finished_jobs_scorer_is_freed_at_once():
    import gc
    import weakref

    from faithbench.scoring import MetricJob, Scorer
    from faithbench.types import MetricInfo

    with toys.toy_entries():
        spec = toys.toy_model()
        scorer = Scorer(spec, "toy_method", lambda model, x, target: x.mean(1), {}, [], "label",
                        torch.device("cpu"))
        explain = scorer.held_explain()
        x = torch.rand(2, 3, 16, 16)
        torch.testing.assert_close(explain(x, torch.tensor([0, 1])), scorer.explain(x, torch.tensor([0, 1])))
        scorer.metrics.append(MetricJob("m", toys.toy_metric, {"explain": explain}, MetricInfo(higher_is_better=True)))
        gone = weakref.ref(scorer)
        was = gc.isenabled()
        gc.disable()  # freed by reference counting alone: no cycle through the metrics
        try:
            del scorer
            assert gone() is None
        finally:
            if was:
                gc.enable()
        with pytest.raises(RuntimeError, match="released"):
            explain(x, torch.tensor([0, 1]))


def test_model_cache_reuses_and_stays_bounded():
    node = OmegaConf.create({"name": "toy_model"})
    cpu = torch.device("cpu")
    with toys.toy_entries():
        one = ModelCache(size=1)
        a = one.load(node, cpu, channels_last=True)
        assert one.load(node, cpu, channels_last=True) is a  # a sweep loads a model once
        b = one.load(node, cpu, channels_last=False)  # another key evicts the first
        assert b is not a and len(one) == 1
        assert one.load(node, cpu, channels_last=True) is not a
        two = ModelCache(size=2)
        a, b = two.load(node, cpu, True), two.load(node, cpu, False)
        assert two.load(node, cpu, True) is a and two.load(node, cpu, False) is b and len(two) == 2
        two.clear()
        assert len(two) == 0
    with pytest.raises(ValueError, match="size=0"):
        ModelCache(size=0)


def test_a_model_dropped_from_the_cache_is_collected_even_in_a_reference_cycle():
    import gc
    import weakref

    node = OmegaConf.create({"name": "toy_model"})
    cpu = torch.device("cpu")
    was = gc.isenabled()
    gc.disable()  # only the cache's own collection can free the cycle
    try:
        with toys.toy_entries():
            cache = ModelCache(size=1)
            model = cache.load(node, cpu, channels_last=True).model
            model.__dict__["hook_owner"] = model  # a cycle, as a plugin's hooks can make
            gone = weakref.ref(model)
            del model
            assert gone() is not None
            cache.load(node, cpu, channels_last=False)  # another key evicts it
            assert gone() is None
    finally:
        if was:
            gc.enable()


class _Poison:
    """Stands for the raw config after prepare: any read is a failure."""

    def __getattr__(self, name: str):
        raise AssertionError(f"read cfg.{name} after prepare")


def _toy_cfg(grid: int = 2):
    """A toy job's config: 6 samples, batches of 3, parts of 4, ``grid`` images in its grid."""
    return OmegaConf.create(dict(
        model={"name": "toy_model"}, method={"name": "toy_method", "scale": 1.0},
        dataset={"name": "toy_data", "n": 6, "broken": [], "shard": 0, "num_shards": 1,
                 "limit": None, "subset_seed": None},
        metric={"toy_metric": {"k": 4}}, metrics=["toy_metric"], target="label", seed=0,
        device="cpu", batch_size=3, num_workers=0, part_size=4, force=False, cache=False,
        out_dir="out", tracking={"uri": None, "experiment": "t"}, figures={"grid": grid}))


def test_scoring_and_artifacts_read_settings_not_cfg(workdir):
    with toys.toy_entries():
        cfg = _toy_cfg()
        job = prepare(cfg)
        s = job.settings
        assert (s.part_size, s.batch_size, s.seed, s.figures_grid, s.metrics) == (4, 3, 0, 2, ("toy_metric",))
        assert s.record["dataset.n"] == 6 and s.tracking_experiment == "t"
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.seed = 1  # type: ignore[misc]
        job = dataclasses.replace(job, cfg=_Poison())
        df = score_parts(job, workdir / "parts")
        assert len(df) == 6 and sorted(p.name for p in (workdir / "parts").glob("part-*")) == [
            "part-00000.parquet", "part-00001.parquet"]
        assert sorted(job.scored) == [0, 1]  # the grid's two samples, as scored
        reread = artifacts.gallery(dataclasses.replace(job, scored={}), df.head(2))
        job = dataclasses.replace(job, dataset=_Poison())  # the gallery does not read them again
        paths = artifacts.write(job, df, workdir / "art")
        assert {p.name for p in paths} >= {"samples.parquet", "gallery.npz", "heatmap_grid.png"}
        with np.load(workdir / "art" / "gallery.npz") as kept:
            assert reread.keys() == set(kept.files)
            for k, v in reread.items():
                np.testing.assert_array_equal(kept[k], v)
        assert aggregate(job, df)["n_samples"] == 6
        tags = tracking_tags(job)  # the run's tags come from prepare's identity, not cfg
        assert (tags["model"], tags["method"], tags["dataset"], tags["shard"], tags["seed"]) == (
            "toy_model", "toy_method", "toy_data", "0/1", "0")
        assert tags["faithbench.group_key"] == run_key(cfg, job.scorer.spec.weights_id, shard=False)


def test_a_negative_grid_is_refused_before_anything_runs(workdir):
    from faithbench.errors import ConfigError

    with toys.toy_entries():
        with pytest.raises(ConfigError, match=r"figures.grid=-1 must be an integer >= 0"):
            prepare(_toy_cfg(grid=-1))


def test_settings_from_a_config_without_figures(workdir):
    cfg = OmegaConf.create(dict(part_size=1, batch_size=1, num_workers=0, seed=3, force=True,
                                out_dir="o", tracking={"uri": "sqlite:///x.db", "experiment": "e"},
                                target="pred", metrics=["a", "b"]))
    s = JobSettings.from_config(cfg, {})
    assert s.figures_grid is None and s.force and s.metrics == ("a", "b")
    assert s.tracking_uri == "sqlite:///x.db" and str(s.out_dir) == "o"
