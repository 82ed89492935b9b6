"""Attribution methods: ``attribute(model, x, target, **params) -> Tensor[B,H,W]``.

Each method lives in its own module named like its registry key and registers itself
with ``@register(...)`` and its capabilities (see ``faithbench.types.MethodInfo``).
Output: float32 on ``x.device``, at input resolution, raw (signed, not normalised).
"""

from __future__ import annotations

from faithbench.registry import Registry
from faithbench.types import MethodInfo

METHODS: Registry[MethodInfo] = Registry("method", __name__, MethodInfo)
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = METHODS.register, METHODS.get, METHODS.names
