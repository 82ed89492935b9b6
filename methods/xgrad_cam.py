"""XGrad-CAM (Fu, Hu, Dong, Zhou, Zhang & Wang, "Axiom-based Grad-CAM: Towards Accurate
Visualization and Explanation of CNNs", BMVC 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method


def weights(c: Capture, **_: object) -> Tensor:
    """Sec. 4, the weights that satisfy sensitivity and conservation [B,K]:
    alpha_k = sum_xy (A_xy / sum_ab A_ab) dy/dA_xy; 0 for a channel summing to 0."""
    total = c.acts.sum((2, 3), keepdim=True)
    share = torch.where(total != 0, c.acts / torch.where(total != 0, total, 1), 0)
    return (share * c.grads).sum((2, 3))


@register(context=("layer",), cost="backward")
@cam_method(weights)  # ReLU(sum_k alpha_k A^k)
def xgrad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM with gradients averaged with activation-proportional weights."""


layer_map = xgrad_cam.layer_map
