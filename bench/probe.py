"""Outside code tried on one sample before any run opens.

A plugin or dotted-path entry that breaks the contract (a map of the wrong shape, a
metric that returns a scalar, logits over the wrong classes, a dataset item that is not
a Sample) fails here with the expected and the actual value, not hours into a sweep
or, worse, with numbers silently computed from a broadcast. Built-ins are not probed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from faithbench.errors import ConfigError
from faithbench.types import BenchDataset, ModelSpec, Sample, stack


def check_dataset(ds: Any, what: str) -> BenchDataset:
    """A dataset builder returned a ``faithbench.types.BenchDataset``."""
    if not isinstance(ds, BenchDataset):
        raise ConfigError(f"{what} returned a {type(ds).__name__}; expected a "
                          "faithbench.types.BenchDataset (items: Samples)")
    return ds


def check_sample(item: Any, what: str) -> Sample:
    """``item`` is a Sample whose image is a float tensor [3,H,W]."""
    if not isinstance(item, Sample):
        raise ConfigError(f"{what}: item 0 is a {type(item).__name__}; expected a "
                          "faithbench.types.Sample")
    img = item.image
    if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] != 3 \
            or not img.is_floating_point():
        got = (f"{tuple(img.shape)} {img.dtype}" if isinstance(img, Tensor)
               else type(img).__name__)
        raise ConfigError(f"{what}: item 0 has image {got}; expected a float tensor [3,H,W]")
    return item


def check_logits(spec: ModelSpec, x: Tensor, what: str) -> None:
    """The model maps ``x`` [B,3,H,W] to logits [B,K], K the number of its class names."""
    with torch.inference_mode():
        out = spec.model(x)
    want = (x.shape[0], len(spec.class_names))
    if not isinstance(out, Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"{what}: logits of shape {got}; expected {want} "
                          f"(batch, {len(spec.class_names)} class names)")


def check_map(out: Any, x: Tensor, what: str) -> None:
    """``out`` is a float tensor [B,H,W] at the input size of ``x``, on ``x.device``."""
    want = (x.shape[0], *x.shape[-2:])
    if not isinstance(out, Tensor):
        raise ConfigError(f"{what} returned a {type(out).__name__}; expected a float tensor "
                          f"of shape {want}")
    if tuple(out.shape) != want or not out.is_floating_point() or out.device != x.device:
        raise ConfigError(f"{what} returned a {out.dtype} tensor of shape {tuple(out.shape)} "
                          f"on {out.device}; expected a float tensor of shape {want} on "
                          f"{x.device} ([B,H,W] at the input size)")


def check_scores(out: Any, n: int, what: str) -> None:
    """``out`` is a dict of per-sample tensors [B] (or [B,T] curves)."""
    if not isinstance(out, dict) or not out:
        raise ConfigError(f"{what} returned a {type(out).__name__}; expected a dict of "
                          f"per-sample tensors [{n}]")
    for k, v in out.items():
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.shape[0] != n:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ConfigError(f"{what} output {k!r} is {got}; expected a tensor [{n}] "
                              f"(a value) or [{n},T] (a curve)")


def probe(scorer: Any, ds: BenchDataset, index: int, outside: set[str]) -> None:
    """Run the outside pieces of a job on sample ``index`` of ``ds``: ``outside`` holds
    their roles (``dataset``, ``model``, ``model.fn``, ``method``, ``metric.<name>``)."""
    item = ds[index]
    if "dataset" in outside:
        check_sample(item, "dataset item")
    if item is None:  # an unreadable sample of a built-in dataset: nothing to try here
        return
    batch = stack([item], [index]).to(scorer.device)
    if outside & {"model", "model.fn"}:
        check_logits(scorer.spec, batch.images, f"model {scorer.spec.name!r}")
    if not outside - {"model", "model.fn", "dataset"}:
        return
    expanded, target, _ = scorer.targets(batch)
    with scorer.autocast():
        heat = scorer.method_fn(scorer.spec.model, expanded.images, target, **scorer.method_params)
    if "method" in outside:
        check_map(heat, expanded.images, f"method {scorer.method!r}")
    for m in scorer.metrics:
        if f"metric.{m.name}" in outside:
            with scorer.autocast():
                out = m.fn(scorer.spec.model, expanded.images, heat.detach().float(), target,
                           expanded, **m.params)
            check_scores(out, len(target), f"metric {m.name!r}")
