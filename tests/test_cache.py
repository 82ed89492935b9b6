"""The heatmap cache stores maps exactly: cached, uncached and direct-call maps and the
AUCs scored on them are bitwise identical; old fp16 (FBH1) entries are never scored."""

from __future__ import annotations

import json
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from faithbench import methods, metrics
from faithbench.cache import HeatmapCache, decode, encode
from faithbench.scoring import Scorer
from faithbench.types import Batch

PARAMS = {"saliency": {}, "grad_cam": {"layer": "features.5"},
          "rise": {"n_masks": 64, "cells": 4, "seed": 1}, "integrated_gradients": {"n_steps": 8}}


def old_fp16_file(m: np.ndarray) -> bytes:
    """A format-1 entry as the previous cache wrote it: fp16(map / max|map|) + scale."""
    s = float(np.abs(m).max()) or 1.0
    payload = zlib.compress((m / s).astype(np.float16).tobytes(), 1)
    head = json.dumps({"shape": list(m.shape), "scale": s, "crc": zlib.crc32(payload)}).encode()
    return b"FBH1" + struct.pack("<I", len(head)) + head + payload


def test_encode_decode_is_bit_exact():
    g = torch.Generator().manual_seed(0)
    m = (torch.randn(37, 53, generator=g) * 1e-6).numpy()
    m[0, :6] = [np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38]  # specials and a denormal
    back = decode(encode(m))
    assert back.dtype == np.float32 and back.shape == (37, 53)
    assert back.tobytes() == m.tobytes()
    with pytest.raises(ValueError, match="old format"):
        decode(old_fp16_file(np.abs(m[1:])))


def test_old_fp16_entries_are_never_scored(tmp_path):
    maps = torch.rand(2, 8, 8)
    cache = HeatmapCache(tmp_path, "ns")
    assert cache.dir.name == "ns-f32"  # the format is in the directory name
    old_dir = tmp_path / "ns"  # where format 1 kept the namespace's files
    old_dir.mkdir()
    (old_dir / cache._path("a").name).write_bytes(old_fp16_file(maps[0].numpy()))
    cache._path("b").write_bytes(old_fp16_file(maps[1].numpy()))  # even inside the new folder
    assert cache.get(["a", "b"]) == [None, None]
    assert cache.corrupt == 1  # only the one it looked up, reported as unreadable


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 32, 32, generator=g)
    return Batch(images=x, labels=torch.tensor([0, 1, 2, 3]), ids=list("abcd"),
                 index=torch.arange(4))


@pytest.mark.parametrize("method", list(PARAMS))
def test_cached_uncached_and_direct_maps_and_aucs_are_identical(tiny_cnn, batch, tmp_path, method):
    fn = methods.get(method).fn
    t, keys = batch.labels, [f"{i}#{c}" for i, c in zip(batch.ids, batch.labels.tolist())]
    direct = fn(tiny_cnn, batch.images, t, **PARAMS[method]).detach()
    sc = Scorer(SimpleNamespace(model=tiny_cnn), method, fn, PARAMS[method], [], "label",
                torch.device("cpu"))
    plain = sc.heatmaps(batch, t, keys)
    sc.cache = HeatmapCache(tmp_path, "ns")
    first = sc.heatmaps(batch, t, keys)  # computed and stored
    again = sc.heatmaps(batch, t, keys)  # read back
    sc.cache._path(keys[1]).unlink()
    sc.cache._path(keys[2]).write_bytes(old_fp16_file(direct[2].numpy()))
    partial = sc.heatmaps(batch, t, keys)  # one missing, one old-format: recomputed
    for maps in (plain, first, again, partial):
        assert maps.dtype == torch.float32 and torch.equal(maps, direct)
    assert len(np.unique(again[0].numpy())) > len(np.unique(direct[0].numpy().astype(np.float16)))
    auc = [metrics.get("deletion").fn(tiny_cnn, batch.images, m, t, batch, step=0.1)["deletion"]
           for m in (direct, plain, first, again, partial)]
    assert all(torch.equal(a, auc[0]) for a in auc)


def test_a_rerun_from_the_cache_and_cache_false_give_identical_numbers(workdir):
    from hydra import compose, initialize_config_module

    from faithbench.run import apply_method_params, prepare, run
    from faithbench.types import stack

    with initialize_config_module("faithbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["dataset.limit=3", "metrics=[deletion,insertion]",
                                           "metric.deletion.step=0.25", "metric.insertion.step=0.25",
                                           "figures.grid=0", "method=saliency", "batch_size=2"])
    first = run(cfg)
    assert len(list((workdir / "faithbench_out" / "cache").rglob("*-f32/*.fbh"))) == 3
    cfg.force = True
    second = run(cfg)  # every map read back
    cfg.cache = False
    third = run(cfg)
    for k in ("deletion", "insertion"):
        assert first[k] == second[k] == third[k], k
    # ... and equal to scoring the float32 map of a direct method call (the fp16 cache
    # moved them), batch by batch as the run does.
    job = prepare(apply_method_params(cfg))
    rows = pd.concat([pd.read_parquet(p) for p in sorted(
        (workdir / "faithbench_out" / "runs").glob("*/part-*.parquet"))]).set_index("index")
    sc = job.scorer
    for part in (job.indices[:2], job.indices[2:]):
        b = stack([job.dataset[i] for i in part], part)
        maps = sc.method_fn(sc.spec.model, b.images, b.labels, **sc.method_params).detach()
        for m in sc.metrics:
            out = m.fn(sc.spec.model, b.images, maps, b.labels, b, **m.params)
            assert rows.loc[part, m.name].tolist() == out[m.name].tolist(), m.name
