"""Toy methods and metrics for the report tests (registered by ``test_report.store``):
a random control, a centre baseline, a confidence drop (for Win %), a localisation
metric with boxes and points, and a robustness-style curve with its x positions."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from faithbench import methods, metrics


def toy_random(model, x, target, *, seed: int | None = None):
    """A random map per sample, seeded by the sample's pixels (a control)."""
    out = []
    for xi in x:
        g = torch.Generator().manual_seed(int(xi.abs().sum().item() * 1000) % 2**31)
        out.append(torch.rand(x.shape[-2:], generator=g))
    return torch.stack(out)


def toy_center(model, x, target):
    """A centred Gaussian, the same for every sample (model-free baseline)."""
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return torch.exp(-(yy**2 + xx**2) / (2 * (h / 4) ** 2)).expand(x.shape[0], h, w).clone()


def toy_drop(model, x, heatmap, target, batch):
    """Grad-CAM++-style drop: score on the image vs on image * min-max(map)."""
    flat = heatmap.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    e = x * ((heatmap - lo) / (hi - lo).clamp_min(1e-12))[:, None]
    with torch.no_grad():
        y = model(x).softmax(1).gather(1, target[:, None])[:, 0]
        o = model(e).softmax(1).gather(1, target[:, None])[:, 0]
    change = 100 * (y - o) / y
    return {"toy_drop": change.clamp(min=0), "toy_drop_change": change}


def toy_loc(model, x, heatmap, target, batch):
    """Box of the top-quarter pixels and the argmax point, with a hit if the point is
    in the target's box; box [B,4] xyxy and point [B,2] (y, x) in input pixels."""
    b, h, w = heatmap.shape
    idx = heatmap.flatten(1).argmax(1)
    py, px = (idx // w).float(), (idx % w).float()
    boxes = []
    for m in heatmap:
        ys, xs = torch.nonzero(m >= m.flatten().quantile(0.75), as_tuple=True)
        boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float())
    region = torch.stack([r for r in batch.regions(target.cpu())])
    hit = region[torch.arange(b), py.long(), px.long()].float()
    return {"toy_loc": hit, "toy_loc_box": torch.stack(boxes), "toy_loc_point": torch.stack([py, px], 1)}


LEVELS = [0.0, 0.1, 0.2, 0.4]


def toy_noise(model, x, heatmap, target, batch):
    """A robustness-style curve: cosine similarity of the map with the map plus seeded
    noise of growing sigma, with its x positions (the noise levels)."""
    flat = heatmap.flatten(1)
    noise = torch.sin(torch.arange(flat.shape[1]) * 12.9898 + flat.sum(1, keepdim=True))  # per sample
    curve = torch.stack([torch.cosine_similarity(flat, flat + s * flat.std(1, keepdim=True) * noise, 1) for s in LEVELS], 1)
    return {"toy_noise": curve.mean(1), "toy_noise_curve": curve,
            "toy_noise_curve_x": torch.tensor(LEVELS).expand(x.shape[0], -1)}


EXTRA = [(methods.METHODS, "toy_random", toy_random, {"stochastic": True, "model_free": True}),
         (methods.METHODS, "toy_center", toy_center, {"needs_grad": False, "model_free": True}),
         (metrics.METRICS, "toy_drop", toy_drop, {"higher_is_better": False,
                                                  "outputs": {"toy_drop_change": False}}),
         (metrics.METRICS, "toy_loc", toy_loc, {"higher_is_better": True, "needs": {"boxes"}}),
         (metrics.METRICS, "toy_noise", toy_noise, {"higher_is_better": True,
                                                    "curve_axes": {"toy_noise_curve": "noise sigma"}})]
METRICS = ["deletion", "insertion", "pointing_game", "toy_metric", "toy_drop", "toy_loc", "toy_noise"]
METHODS = ["toy_method", "toy_random", "toy_center"]


def base_cfg(root: Path, experiment: str):
    return OmegaConf.create(dict(
        model={"name": "toy_model"}, method={"name": "toy_method", "scale": 1.0},
        dataset={"name": "toy_data", "n": 14, "broken": [3], "shard": 0, "num_shards": 1,
                 "limit": None, "subset_seed": None},
        metric={"toy_metric": {"k": 4}, "deletion": {"step": 0.125, "substitute": "zero"},
                "insertion": {"step": 0.125, "substitute": "blur", "blur_kernel": 3, "blur_sigma": 1.0},
                "pointing_game": {"tolerance": 2.0}},
        metrics=METRICS, target="label", seed=0, device="cpu", batch_size=5, num_workers=0,
        part_size=8, force=False, cache=True, out_dir=str(root / "out"),
        tracking={"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": experiment},
        figures={"grid": 5}))
