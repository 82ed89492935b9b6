"""Counterfactual Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017, "Counterfactual Explanations")."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method


def weights(c: Capture, **_: object) -> Tensor:
    """Eq. 1 with the gradient negated: alpha_k = 1/Z sum_ij -dy^c/dA^k_ij [B,K]."""
    return -c.grads.mean((2, 3))


@register(context=("layer",), cost="backward")
@cam_method(weights)  # Eq. 2: ReLU(sum_k alpha_k A^k)
def counterfactual_grad_cam(model: nn.Module, x: Tensor, target: Tensor,
                            layer: str | None = None) -> Tensor:
    """Regions whose removal would make the network more confident in ``target``: the
    evidence against the class."""


layer_map = counterfactual_grad_cam.layer_map
