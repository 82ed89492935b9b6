"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, upsample
from faithbench.methods._common import check_inputs


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM at the layer's resolution [B,h,w] (see ``grad_cam``)."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer)
    # Eq. 1: alpha_k = 1/Z sum_ij d y^c / d A^k_ij (global-average-pooled gradients).
    alpha = c.grads.mean((2, 3))
    # Eq. 2: ReLU(sum_k alpha_k A^k).
    return combine(alpha, c.acts)


@register(context=("layer",), cost="backward")
def grad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Gradient-weighted class activation map.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64; the gradient is of its logit (pre-softmax).
        layer: dotted name of the convolutional layer (the model's CAM layer by default).

    Returns:
        [B,H,W] float32: ReLU(sum_k alpha_k A^k) upsampled bilinearly to the input size,
        not normalised.
    """
    return upsample(layer_map(model, x, target, layer), x.shape[-2:])
