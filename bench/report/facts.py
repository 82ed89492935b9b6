"""What the report needs to know of the registered entries: of a metric, its outputs'
directions, its aggregation and its curves' axis labels; of a method, whether it is a
control (``model_free``) or an oracle. Read from the registry index
(``faithbench.index``), so that a report does not import the registries, and torch
with them, to learn it (the index is rebuilt whenever an entry's file or a plugin
changes). A metric whose aggregation is not a built-in one (its function lives in the
metric's module) is read from the live registry, and so is every entry in a process
that has imported the registries (entries registered from Python are not indexed)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faithbench.aggregate import BUILTIN, Aggregation
from faithbench.errors import ConfigError, unknown_choice


@dataclass(frozen=True)
class MetricFacts:
    """The fields of ``faithbench.types.MetricInfo`` the report reads."""

    higher_is_better: bool
    outputs: Mapping[str, bool]
    aggregate: Aggregation
    curve_axes: Mapping[str, str]

    def direction(self, name: str, key: str) -> bool | None:
        """As ``MetricInfo.direction``: higher_is_better of output ``key`` of metric ``name``."""
        return self.higher_is_better if key == name else self.outputs.get(key)


def indexed() -> dict[str, Any]:
    """What the index keeps of the registered metrics and methods (JSON; imports them)."""
    from faithbench import methods, metrics

    out: dict[str, Any] = {"metrics": {}, "methods": {}}
    for n in metrics.METRICS.names():
        info = metrics.get(n).info
        out["metrics"][n] = {"higher_is_better": info.higher_is_better, "outputs": dict(info.outputs),
                             "aggregate": info.aggregate.name,
                             "builtin": BUILTIN.get(info.aggregate.name) is info.aggregate,
                             "curve_axes": dict(info.curve_axes)}
    for n in methods.METHODS.names():
        info = methods.get(n).info
        out["methods"][n] = {"model_free": info.model_free, "oracle": info.oracle}
    return out


def _live() -> bool:
    """Whether this process has imported the registries."""
    return "faithbench.registry" in sys.modules


@functools.cache
def _indexed() -> dict[str, Any]:
    """The index's facts, read once per process (checking the index's fingerprint walks
    the installed files: ~50 ms)."""
    from faithbench import index
    from faithbench.config import registry_index

    return index.read(registry_index)["facts"]


def _held(kind: str, name: str) -> dict[str, Any]:
    """The index's facts of entry ``name`` of ``kind``; ``ConfigError`` naming the
    registered ones when there is none."""
    held = _indexed()[kind]
    if name not in held:
        raise unknown_choice(kind[:-1], name, held)
    return held[name]


def metric(name: str) -> Any:
    """The facts of registered metric ``name`` (a ``MetricFacts``, or the registry's
    ``MetricInfo`` where the index cannot stand in for it); ``ConfigError`` naming the
    registered metrics when there is none."""
    if not _live():
        held = _held("metrics", name)
        if held["builtin"]:
            return MetricFacts(held["higher_is_better"], held["outputs"], BUILTIN[held["aggregate"]],
                               held["curve_axes"])
    from faithbench import metrics

    return metrics.get(name).info


def registered(name: str) -> bool:
    """Whether metric ``name`` is registered in this installation."""
    try:
        metric(name)
    except ConfigError:
        return False
    return True


def method(name: str) -> Any:
    """The facts of registered method ``name``: an object with ``model_free`` and
    ``oracle`` (the registry's ``MethodInfo`` once the registries are imported);
    ``ConfigError`` naming the registered methods when there is none."""
    if not _live():
        return SimpleNamespace(**_held("methods", name))
    from faithbench import methods

    return methods.get(name).info
