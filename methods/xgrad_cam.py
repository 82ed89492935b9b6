"""XGrad-CAM (Fu, Hu, Dong, Zhou, Zhang & Wang, "Axiom-based Grad-CAM: Towards Accurate
Visualization and Explanation of CNNs", BMVC 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, upsample
from faithbench.methods._common import check_inputs


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """XGrad-CAM at the layer's resolution [B,h,w] (see ``xgrad_cam``)."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer)
    total = c.acts.sum((2, 3), keepdim=True)
    # Sec. 4, the weights that satisfy sensitivity and conservation:
    # alpha_k = sum_xy (A_xy / sum_ab A_ab) dy/dA_xy; 0 for a channel summing to 0.
    share = torch.where(total != 0, c.acts / torch.where(total != 0, total, 1), 0)
    return combine((share * c.grads).sum((2, 3)), c.acts)


@register(context=("layer",), cost="backward")
def xgrad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM with gradients averaged with activation-proportional weights.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer.

    Returns:
        [B,H,W] float32: ReLU(sum_k alpha_k A^k), upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer), x.shape[-2:])
