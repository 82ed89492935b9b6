"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized
Gradient-Based Visual Explanations for Deep Convolutional Networks", WACV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, upsample
from faithbench.methods._common import check_inputs


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM++ at the layer's resolution [B,h,w] (see ``grad_cam_pp``)."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer)
    g, a = c.grads, c.acts
    g2 = g * g
    # Eq. 19 (arXiv numbering; exponential output, first-order gradients only):
    # alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3); 0 where the denominator is 0.
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
    # Eq. 7: w_k = sum_ij alpha_ij ReLU(g_ij).
    w = (alpha * g.clamp(min=0)).sum((2, 3))
    return combine(w, a)


@register(context=("layer",), cost="backward")
def grad_cam_pp(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM with channel weights from positive gradients weighted per position.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64 (gradients of its logit).
        layer: dotted name of the convolutional layer.

    Returns:
        [B,H,W] float32: ReLU(sum_k w_k A^k), upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer), x.shape[-2:])
