"""The run loop on toy entries: results, skip, resume, cache, shards, bad input."""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

import toys
from faithbench.errors import ConfigError
from faithbench.run import run


@pytest.fixture
def cfg(workdir):
    with toys.toy_entries():
        yield OmegaConf.create(dict(
            model={"name": "toy_model"}, method={"name": "toy_method", "scale": 1.0},
            dataset={"name": "toy_data", "n": 10, "broken": [3], "shard": 0, "num_shards": 1,
                     "limit": None, "subset_seed": None},
            metric={"toy_metric": {"k": 4}}, metrics=["toy_metric"], target="label", seed=0,
            device="cpu", batch_size=3, num_workers=0, part_size=4, force=False, cache=True,
            out_dir="out", tracking={"uri": None, "experiment": "t"}, figures={"grid": 4}))


def _runs(tmp_path):
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.get_experiment_by_name("t")
    return c, c.search_runs([exp.experiment_id])


def _samples(client, run):
    with tempfile.TemporaryDirectory() as d:
        return pd.read_parquet(client.download_artifacts(run.info.run_id, "samples.parquet", d))


def test_run_logs_one_finished_run_with_per_sample_rows(cfg, tmp_path):
    res = run(cfg)
    client, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    r = runs[0]
    assert r.data.metrics["toy_metric"] == pytest.approx(res["toy_metric"])
    assert r.data.params["method.scale"] == "1.0" and r.data.params["metric.toy_metric.k"] == "4"
    for tag in ("faithbench.run_key", "torch", "device", "seed", "faithbench.git"):
        assert tag in r.data.tags
    cache_files = list((tmp_path / "out" / "cache").rglob("*.fbh"))
    assert len(cache_files) == 9  # one map per readable sample
    assert int(r.data.tags["faithbench.cache_bytes"]) == sum(p.stat().st_size for p in cache_files)
    df = _samples(client, r)
    assert sorted(df["index"]) == list(range(10))
    assert (df["status"] == "unreadable").sum() == 1 and res["n_unreadable"] == 1
    ok = df[df.status == "ok"]
    assert ok["toy_metric"].mean() == pytest.approx(res["toy_metric"])
    assert res["n_samples"] == 9 and res["toy_metric_n"] == 9
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"samples.parquet", "heatmap_grid.png", "curves.csv", "gallery.npz"} <= arts
    g = np.load(client.download_artifacts(r.info.run_id, "gallery.npz"))
    assert g["images"].shape == (4, 16, 16, 3) and g["maps"].shape == (4, 16, 16)
    assert list(g["ids"]) == ok["id"].head(4).tolist() and len(g["boxes"]) == 4
    assert np.abs(g["maps"]).max() == 1.0


def test_finished_run_is_skipped_and_force_recomputes(cfg, tmp_path):
    run(cfg)
    toys.CALLS["method"] = 0
    cfg.method = {"name": "toy_counting_method"}
    run(cfg)
    assert toys.CALLS["method"] == 9  # 9 readable samples; the grid reads the cache
    run(cfg)
    assert toys.CALLS["method"] == 9  # skipped: nothing recomputed
    cfg.force = True
    cfg.cache = False
    run(cfg)
    assert toys.CALLS["method"] == 9 + 9 + 4  # no cache: the grid's 4 maps are recomputed
    _, runs = _runs(tmp_path)
    assert sum(r.info.status == "FINISHED" for r in runs) == 3
    assert sum(r.data.tags.get("faithbench.superseded") == "true" for r in runs) == 1


def test_interrupted_run_resumes_without_duplicates(cfg, tmp_path):
    ref = copy.deepcopy(cfg)
    ref.tracking.experiment, ref.cache, ref.out_dir = "ref", False, "ref_out"
    reference = run(ref)
    toys.CALLS.update(toy_method=0, crash_at=3)  # dies inside the second part
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    assert len(list((tmp_path / "out" / "runs").glob("*/part-*.parquet"))) == 1
    toys.CALLS["crash_at"] = -1
    res = run(cfg)
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FINISHED"]  # the same run, resumed
    df = _samples(client, runs[0])
    assert df["id"].is_unique and sorted(df["index"]) == list(range(10))
    assert res["toy_metric"] == pytest.approx(reference["toy_metric"])


def test_cache_never_changes_a_number(cfg):
    first = run(cfg)
    cfg.tracking.experiment, cfg.force = "again", True
    second = run(cfg)  # every map read back from the cache
    cfg.tracking.experiment, cfg.cache = "off", False
    third = run(cfg)
    assert first["toy_metric"] == second["toy_metric"] == third["toy_metric"]


def test_shards_partition_the_dataset(cfg, tmp_path):
    full = run(cfg)
    client, _ = _runs(tmp_path)
    ids = []
    for s in range(3):
        cfg.dataset.shard, cfg.dataset.num_shards = s, 3
        run(cfg)
    _, runs = _runs(tmp_path)
    for r in runs:
        if r.data.tags["shard"] != "0/1":
            ids += _samples(client, r)["id"].tolist()
    assert sorted(ids) == sorted(_samples(client, [r for r in runs if r.data.tags["shard"] == "0/1"][0])["id"])
    assert len({r.data.tags["faithbench.group_key"] for r in runs}) == 1
    assert len({r.data.tags["faithbench.run_key"] for r in runs}) == 4
    assert full["n_samples"] == 9


@pytest.mark.parametrize("key,value,match", [
    ("model.name", "nope", r"unknown model 'nope'.*Valid choices:.*toy_model"),
    ("method.name", "toy_methd", r"unknown method 'toy_methd'. Did you mean 'toy_method'"),
    ("metrics", ["toy_metric", "delet"], r"unknown metric 'delet'"),
    ("target", "guess", r"unknown target 'guess'.*label, pred"),
    ("device", "tpu", r"unknown device 'tpu'"),
    ("method.bogus", 3, r"method 'toy_method' has no parameter 'bogus'. Valid parameters: scale, seed"),
    ("dataset.shard", 5, r"dataset.shard=5 is not in \[0, dataset.num_shards=1\)"),
    ("batch_size", 0, r"batch_size=0 must be an integer >= 1"),
    ("part_size", 2.5, r"part_size=2.5 must be an integer >= 1"),
    ("num_workers", -1, r"num_workers=-1 must be an integer >= 0"),
])
def test_bad_input_fails_before_any_run(cfg, tmp_path, key, value, match):
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("t") is None


def test_label_space_mismatch_is_refused(cfg):
    from faithbench import models
    spec = models.MODELS._entries["toy_model"].fn()
    spec.label_space = "imagenet"
    models.MODELS._entries["toy_model"] = type(models.MODELS._entries["toy_model"])(
        "toy_model", lambda **p: spec, models.MODELS._entries["toy_model"].info)
    with pytest.raises(ConfigError, match="predicts 'imagenet' classes but dataset 'toy_data' is labelled in 'toy'"):
        run(cfg)


def test_multilabel_targets_expand_to_one_row_per_class(cfg, tmp_path, monkeypatch):
    base = toys.ToyData.__getitem__

    def multi(self, i):
        s = base(self, i)
        if s is not None:
            lab = torch.zeros(4)
            lab[[i % 4, (i + 1) % 4]] = 1
            s.label = lab
        return s

    monkeypatch.setattr(toys.ToyData, "__getitem__", multi)
    res = run(cfg)
    client, runs = _runs(tmp_path)
    df = _samples(client, runs[0])
    ok = df[df.status == "ok"]
    assert len(ok) == 18 and ok["id"].is_unique
    assert res["n_samples"] == 18


def test_method_params_apply_to_their_method_only(cfg, tmp_path):
    cfg.method_params = {"toy_method": {"scale": 3.0}, "toy_counting_method": {}}
    run(cfg)
    client, runs = _runs(tmp_path)
    assert runs[0].data.params["method.scale"] == "3.0"
    assert not any(k.startswith("method_params") for k in runs[0].data.params)
    cfg.method_params = {"toy_methd": {}}
    with pytest.raises(ConfigError, match="unknown method 'toy_methd'"):
        run(cfg)


def test_precision_puts_methods_and_metrics_under_autocast(cfg, tmp_path):
    from faithbench import methods
    entry = methods.METHODS._entries["toy_method"]
    seen = []

    def spy(model, x, target, **kw):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return entry.fn(model, x, target, **kw)

    methods.METHODS._entries["toy_method"] = type(entry)("toy_method", spy, entry.info)
    try:
        run(cfg)
        cfg.precision = "bf16"
        run(cfg)  # a new run (precision is in the run key), not a skip of the fp32 one
    finally:
        methods.METHODS._entries["toy_method"] = entry
    assert False in seen and torch.bfloat16 in seen
    _, runs = _runs(tmp_path)
    assert len(runs) == 2 and len({r.data.tags["faithbench.run_key"] for r in runs}) == 2
    cfg.precision = "fp8"
    with pytest.raises(ConfigError, match=r"unknown precision 'fp8'.*bf16, fp16, fp32"):
        run(cfg)


def test_cap_perf_caps_only_performance_parameters():
    from faithbench.config import cap_perf

    def fn(model, x, target, chunk: int = 64, internal_batch_size: int = 4, n_masks: int = 500):
        return x

    assert cap_perf(fn, {"n_masks": 500}, 8) == {"n_masks": 500, "chunk": 8}
    assert cap_perf(fn, {"chunk": 200, "n_masks": 500}, None) == {"chunk": 200, "n_masks": 500}
    assert cap_perf(fn, {"chunk": 2}, 8) == {"chunk": 2}  # below the cap: kept


def test_cpu_chunk_cap_scales_with_input_pixels():
    from faithbench.run import cpu_chunk_cap
    cpu = torch.device("cpu")
    assert cpu_chunk_cap(8, cpu, 224) == 8
    assert cpu_chunk_cap(8, cpu, 64) == 8 * 224 * 224 // (64 * 64) == 98
    assert cpu_chunk_cap(8, cpu, 448) == 2 and cpu_chunk_cap(1, cpu, 448) == 1
    assert cpu_chunk_cap(None, cpu, 224) is None
    assert cpu_chunk_cap(8, torch.device("meta"), 224) is None  # off CPU: no cap
    for bad in (0, -1, "8", True):
        with pytest.raises(ConfigError, match=f"cpu_chunk={bad!r}"):
            cpu_chunk_cap(bad, cpu, 224)


def test_cpu_chunk_caps_the_method_chunk_without_changing_the_run(cfg, tmp_path):
    from faithbench import methods
    entry = methods.METHODS._entries["toy_method"]
    seen = []

    def spy(model, x, target, scale: float = 1.0, chunk: int = 4096):
        seen.append(chunk)
        return entry.fn(model, x, target, scale=scale)

    methods.METHODS._entries["toy_method"] = type(entry)("toy_method", spy, entry.info)
    try:
        cfg.cpu_chunk, cfg.cache = 8, False
        first = run(cfg)
        assert set(seen) == {8 * 224 * 224 // (16 * 16)}  # the toy model's input is 16x16
        seen.clear()
        cfg.cpu_chunk = None
        cfg.force = True
        second = run(cfg)  # same run key: the finished run is redone in place, not added
        assert set(seen) == {4096}
    finally:
        methods.METHODS._entries["toy_method"] = entry
    assert first["toy_metric"] == pytest.approx(second["toy_metric"])
    _, runs = _runs(tmp_path)
    assert len({r.data.tags["faithbench.run_key"] for r in runs}) == 1


def test_gallery_npz_reads_back_as_numpy_writes_it(tmp_path):
    """``artifacts.save_npz`` (zlib level 1) holds what ``np.savez_compressed`` holds."""
    from faithbench.artifacts import save_npz

    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (3, 16, 12, 3), dtype=np.uint8),
              "maps": rng.random((3, 16, 12)).astype(np.float16), "ids": np.asarray(["a/1", "b", "c"]),
              "boxes": np.zeros((0, 4), np.float32), "target": np.arange(3, dtype=np.int64)}
    np.savez_compressed(tmp_path / "numpy.npz", **arrays)
    ours, theirs = np.load(save_npz(tmp_path / "ours.npz", arrays)), np.load(tmp_path / "numpy.npz")
    assert ours.files == theirs.files == list(arrays)
    for k in arrays:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape
        assert np.array_equal(ours[k], theirs[k])
