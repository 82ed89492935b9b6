"""``faithbench.evaluate``: score attribution methods from Python (a notebook, a script)
with no config files, by the runner's own code path (``faithbench.scoring.Scorer``,
context filling, parameter checks, chunk caps), so its per-sample numbers are the ones
the CLI logs for the same (model, method, metric)."""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from faithbench.api_inputs import Truth, resolve_model, samples
from faithbench.errors import ConfigError, unknown_choice
from faithbench.jobs import check_count, check_pair, cpu_chunk_cap, pick_device
from faithbench.preprocess import Preprocess
from faithbench.probe import check_map
from faithbench.scoring import (PRECISIONS, MetricJob, Scorer, filled_params, runner_context,
                                score_items)
from faithbench.types import BenchDataset, ModelSpec, Sample, stack

log = logging.getLogger("faithbench")
Explain = Callable[..., torch.Tensor]  # (model, x, target, **params) -> [B,H,W]
MethodSpec = str | tuple[str | Explain, Mapping[str, Any]] | Explain


def _method_table(methods: Sequence[str] | Mapping[str, MethodSpec]) -> dict[str, MethodSpec]:
    if isinstance(methods, str):
        return {methods: methods}
    if isinstance(methods, Mapping):
        return dict(methods)
    return {m: m for m in methods}


def _metric_table(metrics: Sequence[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    if isinstance(metrics, str):
        return {metrics: {}}
    if isinstance(metrics, Mapping):
        return {k: dict(v or {}) for k, v in metrics.items()}
    return {m: {} for m in metrics}


def _check_names(table: dict[str, MethodSpec], metric_table: dict[str, dict[str, Any]]) -> None:
    """Registry names of methods and metrics exist (else the valid choices are named)."""
    from faithbench import methods, metrics

    if not table or not metric_table:
        raise ConfigError("evaluate needs at least one method and one metric")
    for spec in table.values():
        first = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(first, str):
            methods.get(first)
        elif not callable(first):
            raise ConfigError(f"method {first!r} is neither a registry name nor a callable "
                              "(model, x, target) -> [B,H,W]")
    for name in metric_table:
        metrics.get(name)


def _check_pair(spec: ModelSpec, ds: BenchDataset, dataset: str) -> None:
    """The CLI's pair check: one label space, and the same classes where both list them."""
    from omegaconf import OmegaConf

    names = OmegaConf.create({"model": {"name": spec.name}, "dataset": {"name": dataset}})
    check_pair(names, spec.label_space, ds.label_space or None, spec.class_names, ds.class_names)


def _method(label: str, spec: MethodSpec, context: dict[str, Any], cap: int | None,
            model_name: str) -> tuple[Callable[..., torch.Tensor], dict[str, Any]]:
    """(function, filled params) of one method, checked as the runner checks it."""
    from faithbench import methods

    if callable(spec):
        return spec, {}
    name, params = (spec, {}) if isinstance(spec, str) else spec
    if callable(name):  # (function, params): the user's own, called with its params
        return name, dict(params)
    entry = methods.get(name)
    params = filled_params(entry.fn, entry.info.injected, dict(params), context, cap,
                           f"method {label!r}")
    if entry.info.needs_layer and not params.get("layer"):
        raise ConfigError(f"method {label!r} needs a layer and model {model_name!r} has none: "
                          "pass cam_layer=<module name> or the method's layer parameter")
    return entry.fn, params


def _metric_jobs(table: dict[str, dict[str, Any]], context: dict[str, Any], cap: int | None,
                 truth: frozenset[str]) -> list[MetricJob]:
    from faithbench import metrics

    jobs = []
    for name, params in table.items():
        entry = metrics.get(name)
        missing = entry.info.needs - truth
        if missing:
            raise ConfigError(f"metric {name!r} needs {' and '.join(sorted(missing))}: pass "
                              f"{', '.join(sorted(f'{m}=' for m in missing))} or use a dataset that has them")
        params = filled_params(entry.fn, entry.info.injected, params, context, cap,
                               f"metric {name!r}")
        jobs.append(MetricJob(name, entry.fn, params, entry.info))
    return jobs


def _ground_truth(items: list[Sample | None]) -> frozenset[str]:
    ok = [s for s in items if s is not None]
    have = {"boxes": all(s.boxes is not None for s in ok),
            "masks": all(s.masks is not None for s in ok)}
    return frozenset(k for k, v in have.items() if v and ok)


def _check_map(scorer: Scorer, first: Sample, label: str) -> None:
    """One sample through a user's callable: a wrong shape or dtype stops here."""
    b = stack([first], [0]).to(scorer.device)
    _, target, _ = scorer.targets(b)
    out = scorer.method_fn(scorer.spec.model, b.images, target, **scorer.method_params)
    check_map(out, b.images, f"method {label!r}")


def _score(scorer: Scorer, items: list[Sample | None], batch_size: int) -> pd.DataFrame:
    """Rows of every sample, batched as the runner batches them."""
    frames = []
    for start in range(0, len(items), batch_size):
        chunk = list(enumerate(items[start : start + batch_size], start))
        frames += score_items(scorer, chunk, scorer.method)
    return pd.concat(frames, ignore_index=True)


def evaluate(model: str | ModelSpec | torch.nn.Module, images: Any, targets: Any = None,
             methods: Sequence[str] | Mapping[str, MethodSpec] = ("grad_cam",),
             metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("deletion", "insertion"),
             boxes: Sequence[Truth] | None = None, masks: Sequence[Truth] | None = None,
             preprocess: Preprocess | Mapping[str, Any] | None = None, *,
             target: str = "label", seed: int = 0, batch_size: int = 16, device: str = "auto",
             precision: str = "fp32", cpu_chunk: int | None = 8, channels_last: bool = True,
             model_options: Mapping[str, Any] | None = None, dataset: str = "images",
             dataset_options: Mapping[str, Any] | None = None, limit: int | None = None,
             tracking: str | bool | None = None, experiment: str = "faithbench",
             out_dir: str | Path = "faithbench_out", figures_grid: int = 8) -> pd.DataFrame:
    """Score ``methods`` with ``metrics`` on ``images`` and return every per-sample value.

    Args:
        model: a registry name (its parameters in ``model_options``), a ModelSpec, or any
            ``nn.Module`` returning logits (``model_options``: ``cam_layer``,
            ``class_names``, ``label_space``, ``multilabel``, ``name``; the CAM layer is
            found and logged when not given).
        images: a tensor [N,3,H,W] normalised for the model; a list of PIL images or
            paths (run through the model's ``preprocess``); a faithbench dataset; or a
            dataset's registry name (built for the model, ``dataset_options`` its params).
        targets: [N] class indices (or [N,K] multi-hot); None for a dataset.
        methods: registry names, or a dict label -> registry name, (name, params), any
            callable ``(model, x, target) -> [B,H,W]``, or (callable, params).
        metrics: registry names, or a dict name -> params.
        boxes, masks: per image, [n,4] xyxy boxes / [m,H,W] bool masks of its target
            class, or (values, class ids); in the tensor's pixels, or the raw image's.
        preprocess: the input pipeline of a bare module (Preprocess or its fields).
        target, seed, batch_size, device, precision, cpu_chunk, channels_last: as the
            CLI's keys of the same names.
        dataset: the dataset name in the frame and in tracked runs (a registry name given
            as ``images`` names itself).
        limit: score the first ``limit`` samples only (the CLI's ``dataset.limit``).
        tracking: None/False: nothing logged; True: the default MLflow store (as the
            CLI's); a URI. One finished run per method in ``experiment``, with the CLI's
            tags, params, statistics and artifacts (written under ``out_dir``, with a
            heatmap grid of ``figures_grid`` images), which ``faithbench report`` reads.
    Returns:
        one row per (sample, method): ``model``, ``dataset``, ``method``, then the CLI's
        per-sample columns (id, target, pred, correct, status, one per metric output);
        ``attrs`` hold the metric names, the seed and the CAM layer used.
    """
    if target not in ("label", "pred"):
        raise unknown_choice("target", target, ["label", "pred"])
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    check_count("batch_size", batch_size, 1)
    table, metric_table = _method_table(methods), _metric_table(metrics)
    _check_names(table, metric_table)  # before the model loads
    dev = pick_device(device)
    spec = resolve_model(model, dev, channels_last, preprocess, dict(model_options or {}))
    if isinstance(images, str):  # a registry dataset, built for this model's input pipeline
        from faithbench import datasets

        images, dataset = datasets.build(images, spec.preprocess, **dict(dataset_options or {})), images
    if isinstance(images, BenchDataset):
        _check_pair(spec, images, dataset)
    if limit is not None:
        check_count("limit", limit, 1)
    items = samples(images, targets, spec, boxes, masks, limit)
    if not any(s is not None for s in items):
        raise ConfigError("no readable image to score")
    context = runner_context(spec, seed)
    cap = cpu_chunk_cap(cpu_chunk, dev, spec.preprocess.size)
    scorers = {}
    for label, m in table.items():  # everything checked before computing
        fn, params = _method(label, m, context, cap, spec.name)
        scorer = Scorer(spec, label, fn, params, [], target, dev, precision=precision)
        scorer.metrics = _metric_jobs(metric_table, {**context, "explain": scorer.held_explain()},
                                      cap, _ground_truth(items))
        if not isinstance(m, str) and not (isinstance(m, tuple) and isinstance(m[0], str)):
            _check_map(scorer, next(s for s in items if s is not None), label)
        scorers[label] = scorer
    frames = []
    for label, scorer in scorers.items():
        torch.manual_seed(seed)
        df = _score(scorer, items, batch_size)
        if tracking:
            from faithbench.api_tracking import log_method

            log_method(scorer, table[label], df, items, dataset, seed, tracking, experiment,
                       Path(out_dir), figures_grid)
        frames.append(df.assign(model=spec.name, dataset=dataset, method=label))
    out = pd.concat(frames, ignore_index=True)
    front = ["model", "dataset", "method"]
    out = out[front + [c for c in out.columns if c not in front]]
    out.attrs.update(metrics=list(metric_table), seed=seed, cam_layer=spec.cam_layer)
    return out
