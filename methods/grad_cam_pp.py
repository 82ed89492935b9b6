"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized
Gradient-Based Visual Explanations for Deep Convolutional Networks", WACV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method


def weights(c: Capture, **_: object) -> Tensor:
    """Channel weights [B,K] from positive gradients weighted per position."""
    g, a = c.grads, c.acts
    g2 = g * g
    # Eq. 19 (arXiv numbering; exponential output, first-order gradients only):
    # alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3); 0 where the denominator is 0.
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
    # Eq. 7: w_k = sum_ij alpha_ij ReLU(g_ij).
    return (alpha * g.clamp(min=0)).sum((2, 3))


@register(context=("layer",), cost="backward")
@cam_method(weights)  # ReLU(sum_k w_k A^k)
def grad_cam_pp(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM with channel weights from positive gradients weighted per position."""


layer_map = grad_cam_pp.layer_map
