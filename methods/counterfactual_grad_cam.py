"""Counterfactual Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017, "Counterfactual Explanations")."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, upsample
from faithbench.methods._common import check_inputs


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Counterfactual Grad-CAM at the layer's resolution [B,h,w]."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer)
    # Eq. 1 with the gradient negated: alpha_k = 1/Z sum_ij -dy^c/dA^k_ij; then Eq. 2.
    return combine(-c.grads.mean((2, 3)), c.acts)


@register(context=("layer",), cost="backward")
def counterfactual_grad_cam(model: nn.Module, x: Tensor, target: Tensor,
                            layer: str | None = None) -> Tensor:
    """Regions whose removal would make the network more confident in ``target``: the
    evidence against the class.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer.

    Returns:
        [B,H,W] float32, upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer), x.shape[-2:])
