"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, Sec. 3 "Guided Grad-CAM")."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import upsample
from faithbench.methods._common import Reduce, check_inputs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient
from faithbench.methods.grad_cam import layer_map as grad_cam_map


@channel_map("guided_grad_cam", reduce="max_abs")
def guided_grad_cam_channels(model: nn.Module, x: Tensor, target: Tensor,
                             layer: str | None = None) -> Tensor:
    """Guided backprop [B,3,H,W] times the upsampled Grad-CAM map."""
    target = check_inputs(x, target)
    cam = upsample(grad_cam_map(model, x, target, layer), x.shape[-2:])
    return input_gradient(model, x, target, rule="guided") * cam[:, None]


@register(context=("layer",), cost="backward")
def guided_grad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
                    reduce: Reduce = "max_abs") -> Tensor:
    """Pointwise product of guided backpropagation and the (bilinearly upsampled)
    Grad-CAM map: fine detail, class-discriminative.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer for Grad-CAM.
        reduce: channel reduction of the product.

    Returns:
        [B,H,W] float32.
    """
    return reduce_channels(guided_grad_cam_channels(model, x, target, layer), reduce)
