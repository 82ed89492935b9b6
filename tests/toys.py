"""Throwaway registry entries for runner tests: a toy model, dataset, method, metric.
``toy_entries()`` registers them and removes them afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from faithbench import datasets, methods, metrics, models
from faithbench import run as run_module
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, ModelSpec, Sample

CALLS: dict[str, int] = {"method": 0}
PRE = Preprocess(size=16, resize="stretch", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class ToyModel(nn.Module):
    """Class k scores the mean brightness of quadrant k (4 classes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        q = [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]
        return torch.stack([t.mean((1, 2, 3)) for t in q], 1) * 10


class ToyData(BenchDataset):
    label_space = "toy"
    class_names = ["tl", "tr", "bl", "br"]
    ground_truth = frozenset({"boxes"})

    def __init__(self, n: int, broken: tuple[int, ...] = ()) -> None:
        self.n, self.broken = n, broken

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample | None:
        if i in self.broken:
            return None
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, 16, 16, generator=g) * 0.3
        k = i % 4
        y, x = (k // 2) * 8, (k % 2) * 8
        img[:, y : y + 8, x : x + 8] += 0.6
        return Sample(image=PRE.normalize(img), label=torch.tensor(k), id=f"toy{i}",
                      boxes=torch.tensor([[x, y, x + 8, y + 8]], dtype=torch.float32),
                      box_labels=torch.tensor([k]), orig_size=(16, 16))


def toy_model(**params) -> ModelSpec:
    return ModelSpec("toy_model", ToyModel(), PRE, ToyData.class_names, "toy", "toyweights")


def toy_data(preprocess: Preprocess, n: int = 10, broken: tuple[int, ...] = ()) -> ToyData:
    return ToyData(n, tuple(broken))


def toy_method(model, x, target, *, scale: float = 1.0, seed: int | None = None):
    """Input x gradient of the target logit, summed over channels; raises
    KeyboardInterrupt on call number ``CALLS["crash_at"]`` (a simulated kill)."""
    CALLS["toy_method"] = CALLS.get("toy_method", 0) + 1
    if CALLS["toy_method"] == CALLS.get("crash_at"):
        raise KeyboardInterrupt
    x = x.detach().requires_grad_(True)
    out = model(x).gather(1, target[:, None]).sum()
    (g,) = torch.autograd.grad(out, x)
    return (g * x).sum(1).detach() * scale


def toy_counting_method(model, x, target):
    CALLS["method"] += x.shape[0]
    return x.mean(1)


def toy_metric(model, x, heatmap, target, batch, *, k: int = 4):
    """Share of the map's top-k pixels inside the target's box, plus a curve."""
    region = torch.stack([r if r is not None else torch.zeros(x.shape[-2:], dtype=torch.bool)
                          for r in batch.regions(target.cpu())]).to(x.device)
    top = heatmap.flatten(1).topk(k, 1).indices
    hit = region.flatten(1).gather(1, top).float()
    return {"toy_metric": hit.mean(1), "toy_metric_curve": hit.cumsum(1)}


@contextlib.contextmanager
def toy_entries() -> Iterator[None]:
    regs = [(models.MODELS, "toy_model", toy_model, {"label_space": "toy"}),
            (datasets.DATASETS, "toy_data", toy_data, {}),
            (methods.METHODS, "toy_method", toy_method, {}),
            (methods.METHODS, "toy_counting_method", toy_counting_method, {}),
            (metrics.METRICS, "toy_metric", toy_metric,
             {"higher_is_better": True, "needs": {"boxes"}})]
    for reg, name, fn, info in regs:
        reg._load()
        reg.register(name, **info)(fn)
    try:
        yield
    finally:
        for reg, name, _, _ in regs:
            reg._entries.pop(name, None)
        run_module.MODELS.clear()
