"""Deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014), as the backward pass of Springenberg et al. 2015 describe it."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import Reduce, check_inputs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient


@channel_map("deconvnet", reduce="max_abs")
def deconvnet_channels(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Deconvnet signal of the target logit per channel [B,3,H,W]."""
    return input_gradient(model, x, check_inputs(x, target), rule="deconvnet")


@register(cost="backward")
def deconvnet(model: nn.Module, x: Tensor, target: Tensor, reduce: Reduce = "max_abs") -> Tensor:
    """Backpropagation where every ReLU rectifies the backward signal itself
    (R_in = max(R_out, 0)) and ignores where its forward input was positive. Max-pooling
    switches are the recorded argmax positions, i.e. the ordinary gradient of max-pool.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        reduce: channel reduction; "max_abs" as TorchRay's pointing-game protocol.

    Returns:
        [B,H,W] float32.
    """
    return reduce_channels(deconvnet_channels(model, x, target), reduce)
