"""Attribution methods: ``attribute(model, x, target, **params) -> Tensor[B,H,W]``.

Each method lives in its own module named like its registry key and registers itself
with ``@register(...)`` and its capabilities (see ``faithbench.types.MethodInfo``).
Output: float32 on ``x.device``, at input resolution, raw (signed, not normalised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faithbench.registry import Registry, context_of
from faithbench.types import MethodInfo


def plain_info(fn: Callable[..., Any]) -> MethodInfo:
    """Capabilities of a method that does not register itself (a plugin or a dotted
    path): the runner fills its parameters named like a context value (``layer``,
    ``seed``, ...; optional where they have a default); its cost is ``backward``."""
    required, optional = context_of(fn)
    return MethodInfo(context=required, optional_context=optional)


METHODS: Registry[MethodInfo] = Registry("method", __name__, MethodInfo, plain_info)
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = METHODS.register, METHODS.get, METHODS.names
