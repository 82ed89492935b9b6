"""LayerCAM (Jiang, Zhang, Hou, Cheng & Wei, "LayerCAM: Exploring Hierarchical Class
Activation Maps for Localization", IEEE TIP 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, upsample
from faithbench.methods._common import check_inputs


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """LayerCAM at the layer's resolution [B,h,w] (see ``layer_cam``)."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer)
    # Per-position weights w_ij = ReLU(dy/dA_ij), then M = ReLU(sum_k w^k * A^k).
    return combine(c.grads.clamp(min=0), c.acts)


@register(context=("layer",), cost="backward")
def layer_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """Activations weighted position by position by their positive gradients; works at
    shallow layers too, where Grad-CAM's averaged weights blur.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer.

    Returns:
        [B,H,W] float32, upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer), x.shape[-2:])
