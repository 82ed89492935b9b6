"""Metrics: pure batched functions of a heatmap.

``metric(model, x, heatmap, target, batch, **params) -> dict[str, Tensor]`` returns
per-sample values [B] (the output named like the metric is its score) and optional
per-sample curves [B,T] for figures. Each module registers its metrics with
``@register(...)`` and their metadata (see ``faithbench.types.MetricInfo``).
"""

from __future__ import annotations

from faithbench.registry import Entry, Registry
from faithbench.types import MetricInfo

METRICS: Registry[MetricInfo] = Registry("metric", __name__, MetricInfo)
register = METRICS.register


def get(name: str) -> Entry[MetricInfo]:
    """The registered metric ``name``; an error lists the valid names."""
    return METRICS.get(name)


def names(pattern: str = "*") -> list[str]:
    return METRICS.names(pattern)
