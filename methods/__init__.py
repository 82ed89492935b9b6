"""Attribution methods: ``attribute(model, x, target, **params) -> Tensor[B,H,W]``.

Each method lives in its own module named like its registry key and registers itself
with ``@register(...)`` and its capabilities (see ``faithbench.types.MethodInfo``).
Output: float32 on ``x.device``, at input resolution, raw (signed, not normalised).
"""

from __future__ import annotations

from faithbench.registry import Entry, Registry
from faithbench.types import MethodInfo

METHODS: Registry[MethodInfo] = Registry("method", __name__, MethodInfo)
register = METHODS.register


def get(name: str) -> Entry[MethodInfo]:
    """The registered method ``name``; an error lists the valid names."""
    return METHODS.get(name)


def names(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)
