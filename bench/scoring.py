"""Per-batch work: targets, heatmaps (cached or computed), metrics -> per-sample rows."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from faithbench.cache import HeatmapCache
from faithbench.config import cap_perf, fill_context
from faithbench.errors import ConfigError
from faithbench.schema import alias_output, entry_output
from faithbench.types import Batch, MetricInfo, ModelSpec, Sample, stack

log = logging.getLogger("faithbench")

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def runner_context(spec: ModelSpec, seed: int) -> dict[str, Any]:
    """What the runner can inject into a method or metric; each entry gets the names it
    declares in ``register(context=...)`` (``filled_params``). ``explain`` joins once
    the Scorer exists."""
    return {"layer": spec.cam_layer, "seed": int(seed), "activation": spec.activation,
            "preprocess": spec.preprocess, "num_classes": len(spec.class_names)}


def filled_params(fn: Callable[..., Any], injected: frozenset[str], params: dict[str, Any],
                  context: dict[str, Any], cap: int | None, what: str) -> dict[str, Any]:
    """``params`` of entry ``fn`` checked against its signature and declarations, filled
    with the ``context`` values it declares (``injected``), and its performance
    parameters capped at ``cap`` (``faithbench.config.cap_perf``)."""
    declared = {k: v for k, v in context.items() if k in injected}
    return cap_perf(fn, fill_context(fn, params, declared, what), cap)


@dataclass
class MetricJob:
    name: str
    fn: Callable[..., dict[str, Tensor]]
    params: dict[str, Any]
    info: MetricInfo
    alias: str | None = None  # its name in ``metrics`` when that names entry ``name`` under another

    @property
    def label(self) -> str:
        """The name its columns are owned by (the alias when there is one)."""
        return self.alias or self.name

    def column(self, key: str) -> str:
        """The column of the entry's output ``key`` (renamed under an alias)."""
        return alias_output(self.label, self.name, key)

    def direction(self, column: str) -> bool | None:
        """higher_is_better of ``column`` (None: not a score)."""
        return self.info.direction(self.name, entry_output(self.label, self.name, column))


class ForwardCounter:
    """Images passed through ``model``'s forward while active (a forward pre-hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.images = model, 0

    def __enter__(self) -> ForwardCounter:
        def hook(_: Any, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], Tensor):
                self.images += int(args[0].shape[0])

        self._handle = self.model.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()


@dataclass
class Scorer:
    """Everything needed to turn a batch into rows, resolved once per run."""

    spec: ModelSpec
    method: str
    method_fn: Callable[..., Tensor]
    method_params: dict[str, Any]
    metrics: list[MetricJob]
    target: str  # "label" | "pred"
    device: torch.device
    cache: HeatmapCache | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # output key -> metric name
    precision: str = "fp32"  # fp32, or bf16 / fp16: methods and metrics under autocast
    wants_truth: bool = False  # the method declares ``truth``: it is given the batch explained
    truth: Batch | None = None  # the batch being scored (for a method that wants it)
    # metric label -> [seconds, images forwarded, samples] spent in that metric in this process
    cost: dict[str, list[float]] = field(default_factory=dict)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for method and metric work at ``precision`` (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def explain(self, x: Tensor, target: Tensor, model: torch.nn.Module | None = None) -> Tensor:
        """The run's method with the run's params (metrics call it on perturbed inputs)."""
        params = {**self.method_params, "truth": self.truth} if self.wants_truth else self.method_params
        with self.autocast():
            out = self.method_fn(model if model is not None else self.spec.model, x, target,
                                 **params)
        if out.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"method {self.method!r} returned a map of shape "
                             f"{tuple(out.shape)}; expected {(x.shape[0], *x.shape[-2:])}")
        return out.float()

    def held_explain(self) -> Callable[..., Tensor]:
        """``explain`` for the metrics that call it, holding this scorer through a weak
        reference. The scorer holds its metrics: with the bound method in their params, a
        finished job's scorer (its last batch, its cache, its method's params) stayed in a
        reference cycle until the collector's next full collection."""
        scorer = weakref.ref(self)

        def explain(x: Tensor, target: Tensor, model: torch.nn.Module | None = None) -> Tensor:
            held = scorer()
            if held is None:
                raise RuntimeError("explain called after its job's scorer was released")
            return held.explain(x, target, model)

        return explain

    def targets(self, batch: Batch) -> tuple[Batch, Tensor, Tensor]:
        """(batch with one row per target, targets [R], top-1 predictions [R]).
        Multi-label images with ``target=label`` give one row per present class."""
        with torch.inference_mode():
            pred = self.spec.model(batch.images).argmax(1)
        if self.target == "pred":
            return batch, pred.clone(), pred.clone()
        if batch.labels.ndim == 2:
            rows, cls = (batch.labels > 0.5).nonzero(as_tuple=True)
            return batch.select(rows), cls, pred[rows].clone()
        return batch, batch.labels.long(), pred.clone()

    def heatmaps(self, batch: Batch, target: Tensor, keys: list[str]) -> Tensor:
        """[R,H,W] float32 maps, scored at full precision. The cache stores them exactly,
        so a map read back is bit-for-bit the computed one. When any map of the batch is
        missing the whole batch is recomputed (and the missing ones stored): a map then
        never depends on which of its batch neighbours happened to be cached, and
        ``cache=false``, a first run and a cached rerun give identical numbers. The batch
        is kept as ``truth`` for a method that declares it (and for the metrics that
        explain its rows again)."""
        self.truth = batch
        if self.cache is None:
            return self.explain(batch.images, target).detach()
        got = self.cache.get(keys)
        todo = [i for i, m in enumerate(got) if m is None]
        if not todo:
            return torch.stack([m.to(self.device) for m in got])  # type: ignore[union-attr]
        fresh = self.explain(batch.images, target).detach()
        self.cache.put([keys[i] for i in todo], fresh[todo])
        return fresh

    def score(self, batch: Batch) -> dict[str, Any]:
        """Columns for the rows of one batch (same image size)."""
        batch = batch.to(self.device)
        expanded, target, pred = self.targets(batch)
        multi = expanded is not batch
        ids = [f"{i}#{t}" if multi else i for i, t in zip(expanded.ids, target.tolist())]
        heat = self.heatmaps(expanded, target, [f"{i}#{t}" for i, t in zip(expanded.ids, target.tolist())])
        cols: dict[str, Any] = {
            "id": ids, "image_id": list(expanded.ids), "index": expanded.index.numpy(),
            "target": target.cpu().numpy(), "pred": pred.cpu().numpy(),
            "status": ["ok"] * len(ids),
        }
        labels = expanded.labels
        cols["correct"] = (labels.gather(1, pred[:, None])[:, 0] > 0.5 if labels.ndim == 2
                           else pred == labels).cpu().numpy()
        for m in self.metrics:
            start = time.perf_counter()
            with self.autocast(), ForwardCounter(self.spec.model) as fwd:
                out = m.fn(self.spec.model, expanded.images, heat, target, expanded, **m.params)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            spent = self.cost.setdefault(m.label, [0.0, 0.0, 0.0])
            spent[0] += time.perf_counter() - start
            spent[1] += fwd.images
            spent[2] += len(ids)
            for key, v in out.items():
                k = m.column(key)
                if v.shape[0] != len(ids) or v.ndim not in (1, 2):
                    raise ValueError(f"metric {m.name!r} output {k!r} has shape "
                                     f"{tuple(v.shape)}; expected [{len(ids)}] (a value) or "
                                     f"[{len(ids)},T] (a curve, box or point: stored, not averaged)")
                owner = self.outputs.setdefault(k, m.label)
                if owner != m.label:
                    raise ConfigError(f"metrics {owner!r} and {m.label!r} both output {k!r}")
                v = v.detach().float().cpu().numpy()
                cols[k] = list(v) if v.ndim == 2 else v
        return cols


def unreadable_rows(items: list[tuple[int, str]]) -> dict[str, Any]:
    """Rows for samples the dataset could not read: kept, so counts are honest."""
    n = len(items)
    return {"id": [i for _, i in items], "image_id": [i for _, i in items],
            "index": np.array([j for j, _ in items], dtype=np.int64),
            "target": np.full(n, -1), "pred": np.full(n, -1), "status": ["unreadable"] * n,
            "correct": np.zeros(n, dtype=bool)}


def score_items(scorer: Scorer, items: list[tuple[int, Sample | None]], name: str) -> list[pd.DataFrame]:
    """Rows of ``(dataset index, sample)`` pairs: unreadable samples (None) kept as
    rows with a warning, the others scored in one batch per image size."""
    frames = []
    bad = [(i, f"#{i}") for i, s in items if s is None]
    if bad:
        log.warning("%d unreadable samples skipped in %s", len(bad), name)
        frames.append(pd.DataFrame(unreadable_rows(bad)))
    good = [(i, s) for i, s in items if s is not None]
    for shape in dict.fromkeys(tuple(s.image.shape) for _, s in good):
        group = [(i, s) for i, s in good if tuple(s.image.shape) == shape]
        batch = stack([s for _, s in group], [i for i, _ in group])  # type: ignore[misc]
        frames.append(pd.DataFrame(scorer.score(batch)))
    return frames
