"""Guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for
Simplicity: The All Convolutional Net", ICLR Workshop 2015)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import Reduce, check_inputs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient


@channel_map("guided_backprop", reduce="max_abs")
def guided_backprop_channels(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Guided gradient of the target logit per channel [B,3,H,W]."""
    return input_gradient(model, x, check_inputs(x, target), rule="guided")


@register(cost="backward")
def guided_backprop(model: nn.Module, x: Tensor, target: Tensor, reduce: Reduce = "max_abs") -> Tensor:
    """Gradient of the target logit in which every ReLU passes back only positive
    gradients at positive inputs (Fig. 1 of the paper). Applies to nn.ReLU modules,
    in-place ReLU and functional relu alike, and to ReLU6 (gradient passed inside
    (0, 6) only); other activations keep their gradient.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        reduce: channel reduction; "max_abs" as TorchRay's pointing-game protocol.

    Returns:
        [B,H,W] float32.
    """
    return reduce_channels(guided_backprop_channels(model, x, target), reduce)
