"""Excitation backprop's backward rules (Zhang et al., "Top-down Neural Attention by
Excitation Backprop", ECCV 2016), in TorchRay's variant, shared by
``excitation_backprop`` and ``contrastive_excitation_backprop``.

A ``TorchFunctionMode`` active during the forward reroutes, as ``_relu`` does for ReLU,
every linear layer to an autograd function with the excitation rule (Eq. 7 of the
paper, the positive weights W+ and no bias): for y = f(x, W),
``p_in = x * f*(W+, p_out / f(x, W+))`` with f* the layer's ordinary backward
(convolutions, ``linear``, average pools). Batch norm passes the signal back unchanged,
the sum of two feature maps (a residual connection) splits it in proportion to each
summand (TorchRay's ``EltwiseSum``), and everything else (ReLU, max-pool) keeps its
gradient. Nothing is attached to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from faithbench.errors import ConfigError
from faithbench.methods._cam import resolve_layer
from faithbench.tokens import token_layout

_EPS = 1e-20  # TorchRay's guard in p_out / (f(x, W+) + eps)
_WEIGHTED = (F.conv1d, F.conv2d, F.conv3d, F.linear)
_POOLS = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
          F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
_ADDS = (torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__)
_IN_PLACE_ADDS = (Tensor.add_, Tensor.__iadd__)


class _Excite(torch.autograd.Function):
    """y = fn(x); backward: x * vjp(positive, p / (positive(x) + eps))."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fn: Callable[[Tensor], Tensor],  # type: ignore[override]
                positive: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.save_for_backward(x)
        ctx.positive = positive
        return fn(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            z = ctx.positive(xd)
            (g,) = torch.autograd.grad(z, xd, grad / (z + _EPS))
        return g * x, None, None


class _PassBack(torch.autograd.Function):
    """y = fn(x); the signal passes back unchanged (batch norm)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        return fn(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


class _Split(torch.autograd.Function):
    """y = a + b (into ``a`` when ``inplace``, as ``out += identity``); backward:
    (a / y * p, b / y * p), without a guard against y = 0, as TorchRay's ``EltwiseSum``."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, inplace: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(a.detach().clone() if inplace else a, b)
        if inplace:
            ctx.mark_dirty(a)
            return a.add_(b)
        return a + b

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        y = a + b
        return a / y * grad, b / y * grad, None


@dataclass
class Rules:
    """The state the rules read at backward time: ``negate`` flips the weights of
    ``classifier`` (the contrastive pass's dual classifier); ``count`` says how many
    calls the mode rerouted."""

    classifier: Tensor | None = None
    negate: bool = False
    count: int = 0


def _weighted(func: Callable[..., Any], args: tuple, kwargs: dict, rules: Rules) -> Tensor:
    kwargs = dict(kwargs)
    x, w = args[0], args[1] if len(args) > 1 else kwargs.pop("weight")
    b = args[2] if len(args) > 2 else kwargs.pop("bias", None)
    rest = args[3:]

    def positive(inp: Tensor) -> Tensor:
        sign = -1.0 if rules.negate and w is rules.classifier else 1.0
        return func(inp, (sign * w).clamp(min=0), None, *rest, **kwargs)

    return _Excite.apply(x, lambda inp: func(inp, w, b, *rest, **kwargs), positive)


def _is_sum(func: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
    """Whether the call adds two feature tensors of one shape (a residual connection)."""
    if func not in _ADDS + _IN_PLACE_ADDS or len(args) != 2 or set(kwargs) - {"alpha"} or kwargs.get("alpha", 1) != 1:
        return False
    a, b = args
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.dim() > 1


class _ExcitationMode(TorchFunctionMode):
    def __init__(self, rules: Rules) -> None:
        super().__init__()
        self.rules = rules

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _WEIGHTED:
            out = _weighted(func, args, kwargs, self.rules)
        elif func in _POOLS:
            fn = lambda inp: func(inp, *args[1:], **kwargs)  # noqa: E731
            out = _Excite.apply(args[0], fn, fn)
        elif func is F.batch_norm:
            out = _PassBack.apply(args[0], lambda inp: func(inp, *args[1:], **kwargs))
        elif _is_sum(func, args, kwargs):
            out = _Split.apply(*args, func in _IN_PLACE_ADDS)
        else:
            return func(*args, **kwargs)
        self.rules.count += 1
        return out


@contextmanager
def excitation_rules(rules: Rules) -> Iterator[Rules]:
    """Within the block, the forward records the excitation backward rules."""
    with _ExcitationMode(rules):
        yield rules


def classifier_layer(model: nn.Module) -> str:
    """TorchRay's default classifier: the last Conv / Linear module owning a weight."""
    modules = dict(model.named_modules())
    for name, _ in reversed(list(model.named_parameters())):
        owner = name.rpartition(".")[0]
        if name.endswith(".weight") and isinstance(modules.get(owner), (nn.Conv1d, nn.Conv2d,
                                                                          nn.Conv3d, nn.Linear)):
            return owner
    raise ConfigError("the model has no Conv or Linear layer to serve as its classifier")


@contextmanager
def _leaf_at(module: nn.Module, what: str, store: list[Tensor], before: bool = False) -> Iterator[None]:
    """Hand the network after ``module``'s output (``before``: its first input) a copy
    detached into a leaf that requires grad (appended to ``store``, after the tensor
    itself), so the backward can stop there and be read there."""

    def swap(t: object) -> Tensor:
        if not isinstance(t, Tensor):
            raise ConfigError(f"{what} must be one tensor, got {type(t).__name__}")
        leaf = t.detach().clone().requires_grad_(True)
        store.extend((t, leaf))
        return leaf.clone()  # in-place ops downstream must not overwrite the leaf

    if before:
        handle = module.register_forward_pre_hook(lambda _m, args: (swap(args[0]), *args[1:]))
    else:
        handle = module.register_forward_hook(lambda _m, _inp, out: swap(out))
    try:
        yield
    finally:
        handle.remove()


def _grad(out: Tensor, leaf: Tensor, seed: Tensor, what: str, retain: bool = False) -> Tensor:
    (g,) = torch.autograd.grad(out, leaf, seed, retain_graph=retain, allow_unused=True)
    if g is None:
        raise ConfigError(f"excitation backprop: {what}")
    return g


def check_model(model: nn.Module) -> None:
    """``MethodInfo.check_model`` of the excitation methods: a ConfigError for a
    transformer, before any run opens. The probabilistic winner-take-all rules (Sec. 3)
    are defined for non-negative activations passed through convolution, linear,
    pooling and ReLU layers; softmax attention and LayerNorm have no such rule."""
    if token_layout(model) is not None:
        raise ConfigError(
            f"excitation backprop is defined for CNNs (convolution, linear, pooling and ReLU "
            f"layers); {type(model).__name__} is a transformer (token layers, softmax attention, "
            "LayerNorm): use grad_cam, a gradient method or an attention method "
            "(attention_rollout, gradient_rollout, legrad)")


def excitation(model: nn.Module, x: Tensor, target: Tensor, layer: str, contrastive: bool = False,
               contrast_layer: str | None = None, classifier: str | None = None) -> Tensor:
    """The excitation signal at the output of ``layer`` [B,C,h,w] float32, top-down from
    each sample's target logit.

    ``contrastive``: the contrastive signal (Sec. 3.3): the signal reaching
    ``contrast_layer``'s output (None: the input of ``classifier``) when the
    ``classifier`` layer's weights are negated (the dual classifier; None: the last
    Conv / Linear) is subtracted there from the ordinary one before the rest of the way
    down. The forward runs once; the two top passes reuse it (TorchRay negates the
    weights after its forward, so its forward values are the same).
    """
    check_model(model)
    stores: list[list[Tensor]] = [[], []]
    rules = Rules()
    with ExitStack() as stack:
        stack.enter_context(_leaf_at(resolve_layer(model, layer), f"layer {layer!r}", stores[0]))
        if contrastive:
            name = classifier or classifier_layer(model)
            rules.classifier = resolve_layer(model, name).weight
            at = f"contrast_layer {contrast_layer!r}" if contrast_layer else f"the input of {name!r}"
            point = resolve_layer(model, contrast_layer or name)
            stack.enter_context(_leaf_at(point, at, stores[1], before=not contrast_layer))
        with torch.enable_grad(), excitation_rules(rules):
            logits = model(x.detach())
    if rules.count == 0:
        raise ConfigError("excitation backprop: the model called no convolution, linear or "
                          "average-pool function, so there is nothing to excite")
    for store, what in zip(stores, (f"layer {layer!r}", "the contrast point")):
        if store and len(store) != 2:
            raise ConfigError(f"{what} ran {len(store) // 2} times in one forward; "
                              "choose a module that runs exactly once")
    score = logits.gather(1, target[:, None]).sum()
    one = torch.ones_like(score)
    sal = stores[0][1]
    if not contrastive:
        return _grad(score, sal, one, f"the model output does not depend on layer {layer!r}").float()
    c_in, con = stores[1]
    missing = f"the model output does not depend on {at} as read after layer {layer!r}; it must come after it"
    rules.negate = True
    dual = _grad(score, con, one, missing, retain=True)
    rules.negate = False
    delta = _grad(score, con, one, missing) - dual
    return _grad(c_in, sal, delta, f"{at} does not depend on layer {layer!r}; it must come after it").float()
