"""Gradient saliency (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR Workshop 2014)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import Reduce, check_inputs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient


@channel_map("saliency", reduce="max_abs")
def saliency_channels(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """d logit_target / d x per channel [B,3,H,W]."""
    return input_gradient(model, x, check_inputs(x, target))


@register(cost="backward")
def saliency(model: nn.Module, x: Tensor, target: Tensor, reduce: Reduce = "max_abs") -> Tensor:
    """Gradient of the target logit w.r.t. the input pixels.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        reduce: channel reduction; "max_abs" is the paper's map
            M_ij = max_c |d S_target / d x_cij| (Sec. 3.1).

    Returns:
        [B,H,W] float32.
    """
    return reduce_channels(saliency_channels(model, x, target), reduce)
