"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method


def weights(c: Capture, **_: object) -> Tensor:
    """Eq. 1: alpha_k = 1/Z sum_ij dy^c/dA^k_ij, the global-average-pooled gradients [B,K]."""
    return c.grads.mean((2, 3))


@register(context=("layer",), cost="backward")
@cam_method(weights)  # Eq. 2: ReLU(sum_k alpha_k A^k)
def grad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Gradient-weighted class activation map: each channel weighted by the spatial mean
    of the gradient of the target's logit (pre-softmax)."""


layer_map = grad_cam.layer_map
