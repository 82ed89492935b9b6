"""Modified ReLU backward passes for guided backpropagation and the deconvnet.

A ``TorchFunctionMode`` active during the forward reroutes every ReLU call, whether it
comes from an ``nn.ReLU`` module (which calls ``F.relu``), in-place ReLU, ``torch.relu``,
``F.relu`` or ``Tensor.relu``, to an autograd function with the modified backward rule.
Clipped ReLUs (``nn.ReLU6``, ``F.relu6``, ``F.hardtanh`` with ``min_val=0``, as in
MobileNet / EfficientNet-Lite) get the same rule with "positive" meaning "inside the
linear range". Nothing is attached to the model, so nothing needs removing afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

Rule = Literal["guided", "deconvnet"]


class _ModifiedReLU(torch.autograd.Function):
    """clamp(x, 0, hi) forward; backward by ``rule``:
    guided (Springenberg et al. 2015, Fig. 1):  R_in = (0 < x < hi) * (R_out > 0) * R_out
    deconvnet (Zeiler & Fergus 2014, "rectification"):  R_in = (R_out > 0) * R_out
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, rule: str, inplace: bool, hi: float) -> Tensor:  # type: ignore[override]
        ctx.rule = rule
        # A new tensor, so it stays valid when x is then overwritten in place.
        ctx.save_for_backward((x > 0) & (x < hi) if math.isfinite(hi) else x > 0)
        clip = {"min": 0} if not math.isfinite(hi) else {"min": 0, "max": hi}
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(**clip)
        return x.clamp(**clip)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (linear,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.rule == "guided":
            grad = grad * linear
        return grad, None, None, None


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _parse(func: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[bool, float] | None:
    """(inplace, upper clip) if ``func(*args, **kwargs)`` is a (clipped) ReLU, else None."""
    if func in (torch.relu, torch.Tensor.relu):
        return False, math.inf
    if func in (torch.relu_, torch.Tensor.relu_, F.relu_):
        return True, math.inf
    if func is F.relu:
        return bool(_arg(args, kwargs, 1, "inplace", False)), math.inf
    if func is F.relu6:
        return bool(_arg(args, kwargs, 1, "inplace", False)), 6.0
    if func is F.hardtanh and float(_arg(args, kwargs, 1, "min_val", -1.0)) == 0.0:
        return bool(_arg(args, kwargs, 3, "inplace", False)), float(_arg(args, kwargs, 2, "max_val", 1.0))
    return None


class _ReLUMode(TorchFunctionMode):
    def __init__(self, rule: Rule) -> None:
        super().__init__()
        self.rule = rule
        self.count = 0

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        relu = _parse(func, args, kwargs)
        if relu is None:
            return func(*args, **kwargs)
        self.count += 1
        x = args[0] if args else kwargs["input"]
        return _ModifiedReLU.apply(x, self.rule, *relu)


@contextmanager
def relu_rule(rule: Rule | None) -> Iterator[_ReLUMode | None]:
    """Within the block, every ReLU backpropagates by ``rule`` (None: the true gradient).
    Yields the mode (its ``count`` says how many ReLU calls it rerouted)."""
    if rule is None:
        yield None
        return
    mode = _ReLUMode(rule)
    with mode:
        yield mode
