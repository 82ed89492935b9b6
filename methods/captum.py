"""Adapter: any Captum attribution class by name (Kokhlikyan et al., "Captum: A unified and
generic model interpretability library for PyTorch", arXiv 2020). Optional extra."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, check_choice, unknown_choice
from faithbench.methods import register
from faithbench.methods._cam import resolve_layer
from faithbench.methods._common import Reduce, check_inputs, REDUCTIONS
from faithbench.methods._peers import as_tensor, import_peer, preserved, to_map


def captum_classes(module: Any) -> dict[str, type]:
    """Captum attribution classes that take a model (or forward function) first and a
    per-sample ``target``."""
    out = {}
    for name, cls in vars(module).items():
        if not (inspect.isclass(cls) and issubclass(cls, module.Attribution)) or inspect.isabstract(cls):
            continue
        init = list(inspect.signature(cls.__init__).parameters)[1:2]
        attribute = getattr(cls, "attribute", None)
        if init in (["forward_func"], ["model"]) and callable(attribute) \
                and "target" in inspect.signature(attribute).parameters:
            out[name] = cls
    return out


@register(optional_context=("layer",), cost="backward")
def captum(
    model: nn.Module, x: Tensor, target: Tensor, attribution: str = "IntegratedGradients",
    layer: str | None = None, init_kwargs: dict[str, Any] | None = None,
    attribute_kwargs: dict[str, Any] | None = None, reduce: Reduce = "sum",
) -> Tensor:
    """Run ``captum.attr.<attribution>`` and turn its output into [B,H,W] maps.

    Args:
        model: classifier returning logits [B,K] (Captum reads the target logit).
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        attribution: Captum class name, e.g. "Saliency", "IntegratedGradients",
            "DeepLift", "Occlusion", "LayerGradCam", "GuidedGradCam".
        layer: dotted module name, given to classes whose constructor takes a layer
            (the model's CAM layer by default; ignored by the others).
        init_kwargs: extra constructor arguments.
        attribute_kwargs: extra ``attribute`` arguments (``n_steps``, ``baselines``,
            ``sliding_window_shapes``, ...).
        reduce: channel reduction of [B,C,h,w] outputs ("sum" is Captum's own
            visualisation default; "max_abs" the saliency convention).

    Returns:
        [B,H,W] float32; layer attributions are upsampled bilinearly.
    """
    target = check_inputs(x, target)
    check_choice("reduce", reduce, REDUCTIONS)
    attr = import_peer("captum.attr", "captum")
    classes = captum_classes(attr)
    if attribution not in classes:
        raise unknown_choice("Captum attribution", attribution, classes)
    cls = classes[attribution]
    kwargs = dict(init_kwargs or {})
    if "layer" in inspect.signature(cls.__init__).parameters:
        if not layer:
            raise ConfigError(f"Captum {attribution} needs `layer`, a dotted module name")
        kwargs["layer"] = resolve_layer(model, layer)
    method = cls(model, **kwargs)
    xin = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), preserved(model):
        out = method.attribute(xin, target=target, **dict(attribute_kwargs or {}))
    if isinstance(out, tuple):
        out = out[0]
    return to_map(as_tensor(out, x.device).detach(), x.shape[-2:], reduce)
