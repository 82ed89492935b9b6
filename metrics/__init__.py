"""Metrics: pure batched functions of a heatmap.

``metric(model, x, heatmap, target, batch, **params) -> dict[str, Tensor]`` returns
per-sample values [B] (the output named like the metric is its score) and optional
per-sample curves [B,T] for figures. Each module registers its metrics with
``@register(...)`` and their metadata (see ``faithbench.types.MetricInfo``).
"""

from __future__ import annotations

from faithbench.registry import Registry
from faithbench.types import MetricInfo

METRICS: Registry[MetricInfo] = Registry("metric", __name__, MetricInfo)
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = METRICS.register, METRICS.get, METRICS.names
