"""On the bundled shapes_cnn and shapes scenes, a faithful map (Grad-CAM) beats its
inversion and a random map on deletion, insertion and pointing_game."""

from __future__ import annotations

import pytest
import torch

from faithbench import metrics
from faithbench.types import stack


def _needs(registry: str, name: str):
    mod = pytest.importorskip(f"faithbench.{registry}")
    if name not in mod.names():
        pytest.skip(f"{registry} {name!r} is not registered in this checkout")
    return mod


def test_faithful_map_beats_inverted_and_random_maps():
    models = _needs("models", "shapes_cnn")
    datasets = _needs("datasets", "shapes")
    methods = _needs("methods", "grad_cam")
    spec = models.load("shapes_cnn")
    ds = datasets.build("shapes", spec.preprocess, n=12, seed=0)
    batch = stack([ds[i] for i in range(len(ds))], list(range(len(ds))))
    target = batch.labels.long()
    faithful = methods.get("grad_cam").fn(spec.model, batch.images, target, layer=spec.cam_layer).detach()
    maps = {"faithful": faithful, "inverted": -faithful,
            "random": torch.rand(faithful.shape, generator=torch.Generator().manual_seed(0))}
    score = {}
    for kind, h in maps.items():
        for name, kw in [("deletion", {"step": 1 / 16}), ("insertion", {"step": 1 / 16}),
                         ("pointing_game", {})]:
            out = metrics.get(name).fn(spec.model, batch.images, h, target, batch, **kw)
            score[kind, name] = out[name].nanmean().item()
    for other in ("inverted", "random"):
        assert score["faithful", "deletion"] < score[other, "deletion"], score
        assert score["faithful", "insertion"] > score[other, "insertion"], score
        assert score["faithful", "pointing_game"] > score[other, "pointing_game"], score
