"""Class means of per-sample hits (pointing game): over the classes present, or over the
whole label space as TorchRay's ``PointingGame`` (torchray/benchmark/pointing_game.py)
computes it, transcribed below as a loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from faithbench.aggregate import class_space, summarize, summarize_column
from faithbench.errors import ConfigError
from faithbench.metrics import get


def torchray_accuracy(values: np.ndarray, classes: np.ndarray, num_classes: int) -> float:
    """TorchRay: ``aggregate(hit, class_id)`` counts +1 as a hit, -1 as a miss and skips 0
    (our NaN); ``accuracy = (hits / (hits + misses).clamp(min=1)).mean()`` over all classes."""
    hits = torch.zeros((num_classes,), dtype=torch.float64)
    misses = torch.zeros((num_classes,), dtype=torch.float64)
    for v, c in zip(values.tolist(), classes.tolist()):
        if v != v:  # skipped
            continue
        if v == 1.0:
            hits[c] += 1
        else:
            misses[c] += 1
    return float((hits / (hits + misses).clamp(min=1)).mean())


def test_label_space_mean_equals_torchray_and_present_mean_does_not():
    rng = np.random.default_rng(0)
    n, k = 60, 20
    cls = rng.choice(np.arange(12), n)  # 8 of the 20 classes never occur
    hit = (rng.random(n) < 0.6).astype(float)
    hit[rng.random(n) < 0.15] = np.nan  # skipped pairs
    hit[cls == 5] = np.nan  # a class present only as skipped pairs: 0/0
    s = summarize(hit, cls, "class_mean", num_classes=k, seed=0)
    assert s["mean"] == pytest.approx(torchray_accuracy(hit, cls, k), abs=1e-12)
    assert s["classes"] == k and s["n"] == int(np.isfinite(hit).sum())
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    present = summarize(hit, cls, "class_mean", seed=0)
    ok = np.isfinite(hit)
    by_hand = pd.Series(hit[ok]).groupby(cls[ok]).mean().mean()
    assert present["mean"] == pytest.approx(by_hand, abs=1e-12) and present["classes"] == 11
    assert present["mean"] > s["mean"] + 0.2  # 11 classes vs 20: the subset's gap


def test_full_label_space_gives_the_same_mean_both_ways():
    rng = np.random.default_rng(1)
    cls = np.concatenate([np.arange(20), rng.integers(0, 20, 40)])
    hit = (rng.random(60) < 0.5).astype(float)
    a = summarize(hit, cls, "class_mean", seed=0)
    b = summarize(hit, cls, "class_mean", num_classes=20, seed=0)
    assert a["mean"] == pytest.approx(b["mean"], abs=1e-12) and a["classes"] == b["classes"] == 20


def test_summarize_column_reads_the_rule_from_the_metric_params():
    frame = pd.DataFrame({"target": [0, 0, 1], "pointing_game": [1.0, 0.0, 1.0]})
    params = {"class_mean": "label_space", "num_classes": 4}
    s = summarize_column(frame, "pointing_game", "class_mean", num_classes=class_space(params))
    assert s["mean"] == pytest.approx((0.5 + 1.0) / 4) and s["classes"] == 4
    s = summarize_column(frame, "pointing_game", "class_mean", num_classes=class_space({}))
    assert s["mean"] == pytest.approx(0.75) and s["classes"] == 2
    with pytest.raises(ConfigError, match="num_classes=None"):
        class_space({"class_mean": "label_space", "num_classes": None})
    with pytest.raises(ValueError, match="outside the label space"):
        summarize_column(frame, "pointing_game", "class_mean", num_classes=1)


def test_pointing_game_refuses_an_unknown_rule():
    from test_metrics_pointing import make_batch

    x = torch.zeros(1, 3, 8, 8)
    b = make_batch(x, [torch.tensor([[0.0, 0.0, 2.0, 2.0]])], [torch.tensor([0])])
    with pytest.raises(ConfigError, match="unknown class_mean 'all'.*Valid choices: label_space, present"):
        get("pointing_game").fn(None, x, torch.rand(1, 8, 8), torch.tensor([0]), b, class_mean="all")
