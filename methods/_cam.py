"""Machinery shared by the CAM family: find the layer, capture its activations (and the
gradient of the target logits w.r.t. them), combine channels, upsample to the input.

Transformer layers are read through the model's token layout (``faithbench.tokens``):
``[B,N,C]`` tokens without their class / distillation / register tokens, or Swin's
``[B,h,w,C]``, become ``[B,C,h,w]`` inside the hook, and an edited map is written back
in the layer's own layout. Models without a layout (CNNs) take the plain path.

Every CAM variant only computes channel weights: ``cam_method(weights)`` builds the
method from them (as pytorch-grad-cam's ``get_cam_weights``); see ``grad_cam.py``.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice
from faithbench.methods._common import check_inputs
from faithbench.tokens import TokenLayout, token_layout

# A forward hook may return a replacement output (or None to keep it).
OutputEdit = Callable[[Tensor], Tensor | None]


def resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The sub-module of ``model`` named ``layer`` (dotted, as in ``named_modules``)."""
    if not layer:
        raise ConfigError("this method needs `layer`: the dotted name of a module, e.g. 'layer4'")
    names = dict(model.named_modules())
    if layer not in names:
        raise unknown_choice("layer", layer, [n for n in names if n])
    return names[layer]


@contextmanager
def hook_output(module: nn.Module, edit: OutputEdit, layout: TokenLayout | None = None,
                size: tuple[int, int] | None = None) -> Iterator[list[int]]:
    """Run ``edit`` on every output of ``module`` while the block runs; the hook is
    removed on exit, exceptions included. Yields a one-item list counting the calls.

    With a token ``layout`` (transformers), ``edit`` sees the output as ``[B,C,h,w]``
    (``layout.to_map`` at the input ``size`` (H, W)) and a replacement it returns is
    put back in the layer's layout, prefix tokens unchanged."""
    calls = [0]

    def hook(_m: nn.Module, _inp: object, out: object) -> Tensor | None:
        if layout is not None and isinstance(out, Tensor) and size is not None:
            calls[0] += 1
            new = edit(layout.to_map(out, size, _m))
            return None if new is None else layout.from_map(new, out, _m)
        if not isinstance(out, Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(f"CAM layer must output a [B,K,h,w] tensor, got {shape}")
        calls[0] += 1
        return edit(out)

    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def hook_layer(model: nn.Module, layer: str | None, edit: OutputEdit,
               size: tuple[int, int]) -> Iterator[list[int]]:
    """:func:`hook_output` on the module named ``layer``, in the model's token layout
    (none for CNNs) at the input ``size`` (H, W)."""
    with hook_output(resolve_layer(model, layer), edit, token_layout(model), size) as calls:
        yield calls


def _check_once(calls: list[int], layer: str) -> None:
    if calls[0] != 1:
        raise ConfigError(
            f"layer {layer!r} ran {calls[0]} times in one forward; choose a module that runs "
            "exactly once (e.g. a block, not a shared activation module)"
        )


@dataclass
class Capture:
    acts: Tensor  # [B,K,h,w] activations of the layer, detached
    grads: Tensor | None  # [B,K,h,w] d(sum_i logit_i[target_i]) / d acts, or None
    logits: Tensor  # [B,classes], detached


def capture(model: nn.Module, x: Tensor, target: Tensor, layer: str, grad: bool = True) -> Capture:
    """Forward ``x`` and capture the activations of ``layer`` and, if ``grad``, their
    gradient. Gradients flow only into a detached copy of the activation (never into the
    parameters or earlier layers), so nothing accumulates in ``.grad``.

    Args:
        x: [B,3,H,W]; target: [B] int64 on x.device.
    """
    store: list[Tensor] = []

    def edit(out: Tensor) -> Tensor:
        a = out.detach().clone().requires_grad_(grad)
        store.append(a)
        # Hand the rest of the network a copy, so in-place ops downstream (ReLU(inplace))
        # cannot overwrite the captured activation.
        return a.clone() if grad else out

    with torch.set_grad_enabled(grad), hook_layer(model, layer, edit, x.shape[-2:]) as calls:
        logits = model(x)
    _check_once(calls, layer)
    acts = store[0]
    grads = None
    if grad:
        score = logits.gather(1, target[:, None]).sum()
        (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
        if grads is None:
            raise ConfigError(f"the model output does not depend on layer {layer!r}")
    return Capture(acts.detach(), grads, logits.detach())


def combine(weights: Tensor, acts: Tensor, relu: bool = True) -> Tensor:
    """Weighted sum of activation channels: sum_k w_k A_k, then ReLU (Grad-CAM Eq. 2).

    Args:
        weights: [B,K] channel weights, or [B,K,h,w] per-position weights.
        acts: [B,K,h,w].

    Returns:
        [B,h,w] map at layer resolution.
    """
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    cam = (weights * acts).sum(1)
    return cam.clamp(min=0) if relu else cam


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (half-pixel centres, ``align_corners=False``, like OpenCV's
    ``INTER_LINEAR``) of [B,h,w] maps to ``size`` -> [B,H,W] float32."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


# weights(capture, model=, x=, target=, layer=, **params) -> [B,K] channel weights or
# [B,K,h,w] per-position weights; params are the method's own, defaults filled in.
Weights = Callable[..., Tensor]

_ARGS = """\
    model: classifier returning logits [B,K].
    x: normalised images [B,3,H,W].
    target: class per sample [B] int64 (gradients, if any, are of its logit).
    layer: dotted name of the convolutional layer (the model's CAM layer by default)."""
_RETURNS = {True: "ReLU(sum_k w_k A^k)", False: "sum_k w_k A^k (signed, no ReLU)"}


def cam_method(weights: Weights, *, grad: bool = True,
               relu: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Tensor]]:
    """Make a CAM method from its channel ``weights`` and a declaration: a function whose
    signature ``(model, x, target, layer=None, **params)`` and docstring (summary, then
    ``Args:`` for its own ``params`` only) describe the entry; its body is not run.

    The method returns ``upsample(layer_map(...))`` [B,H,W] float32, where
    ``layer_map`` [B,h,w] (attached as ``.layer_map``) is ``combine(w, A)``: the layer's
    activations A captured (with gradients if ``grad``) and weighted by ``weights``,
    then ReLU unless ``relu`` is False.
    """
    def decorate(declaration: Callable[..., Any]) -> Callable[..., Tensor]:
        sig = inspect.signature(declaration)

        def layer_map(*args: Any, **kwargs: Any) -> Tensor:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            params = dict(bound.arguments)
            model, x = params.pop("model"), params.pop("x")
            target = check_inputs(x, params.pop("target"))
            c = capture(model, x, target, params["layer"], grad=grad)
            w = weights(c, model=model, x=x, target=target, **params)
            return combine(w.to(c.acts.dtype), c.acts, relu=relu)

        @functools.wraps(declaration)
        def method(*args: Any, **kwargs: Any) -> Tensor:
            x = sig.bind(*args, **kwargs).arguments["x"]
            return upsample(layer_map(*args, **kwargs), x.shape[-2:])

        method.__doc__ = _docstring(declaration.__doc__, relu)
        layer_map.__name__ = f"{declaration.__name__}_layer_map"
        layer_map.__doc__ = f"{declaration.__name__} at the layer's resolution [B,h,w], before upsampling."
        method.layer_map = layer_map  # type: ignore[attr-defined]
        return method

    return decorate


def _docstring(own: str | None, relu: bool) -> str:
    """The declaration's summary and ``Args:``, after the arguments every CAM shares."""
    summary, _, extra = inspect.cleandoc(own or "").partition("\nArgs:\n")
    args = _ARGS + ("\n" + extra.rstrip() if extra.strip() else "")
    returns = textwrap.fill(f"[B,H,W] float32: {_RETURNS[relu]} at the layer, upsampled "
                            "bilinearly to the input size, not normalised.", 84,
                            initial_indent="    ", subsequent_indent="    ")
    return f"{summary.rstrip()}\n\nArgs:\n{args}\n\nReturns:\n{returns}\n"
