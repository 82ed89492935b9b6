"""LayerCAM (Jiang, Zhang, Hou, Cheng & Wei, "LayerCAM: Exploring Hierarchical Class
Activation Maps for Localization", IEEE TIP 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method


def weights(c: Capture, **_: object) -> Tensor:
    """Per-position weights w^k_ij = ReLU(dy^c/dA^k_ij) [B,K,h,w]."""
    return c.grads.clamp(min=0)


@register(context=("layer",), cost="backward")
@cam_method(weights)  # M = ReLU(sum_k w^k * A^k), element-wise products
def layer_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Activations weighted position by position by their positive gradients; works at
    shallow layers too, where Grad-CAM's averaged weights blur."""


layer_map = layer_cam.layer_map
