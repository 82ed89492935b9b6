"""Modified ReLU backward passes for guided backpropagation and the deconvnet.

A ``TorchFunctionMode`` active during the forward reroutes every ReLU call, whether it
comes from an ``nn.ReLU`` module (which calls ``F.relu``), in-place ReLU, ``torch.relu``,
``F.relu`` or ``Tensor.relu``, to an autograd function with the modified backward rule.
Nothing is attached to the model, so nothing needs removing afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

Rule = Literal["guided", "deconvnet"]


class _ModifiedReLU(torch.autograd.Function):
    """relu(x) forward; backward by ``rule``:
    guided (Springenberg et al. 2015, Eq. in Fig. 1):  R_in = (x > 0) * (R_out > 0) * R_out
    deconvnet (Zeiler & Fergus 2014, "rectification"):  R_in = (R_out > 0) * R_out
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, rule: str, inplace: bool) -> Tensor:  # type: ignore[override]
        ctx.rule = rule
        ctx.save_for_backward(x > 0)  # a new tensor: safe even when x is then overwritten
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=0)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (positive,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.rule == "guided":
            grad = grad * positive
        return grad, None, None


_OUT_OF_PLACE: set[Callable[..., Any]] = {torch.relu, torch.Tensor.relu}
_IN_PLACE: set[Callable[..., Any]] = {torch.relu_, torch.Tensor.relu_, F.relu_}


class _ReLUMode(TorchFunctionMode):
    def __init__(self, rule: Rule) -> None:
        super().__init__()
        self.rule = rule
        self.count = 0

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.relu:
            inplace = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
            self.count += 1
            return _ModifiedReLU.apply(args[0] if args else kwargs["input"], self.rule, inplace)
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            self.count += 1
            return _ModifiedReLU.apply(args[0] if args else kwargs["input"], self.rule, func in _IN_PLACE)
        return func(*args, **kwargs)


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
