"""Gradient * input (Shrikumar et al., "Not Just a Black Box: Learning Important Features
Through Propagating Activation Differences", arXiv 2016; as Captum's InputXGradient)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import Reduce, check_inputs, reduce_channels
from faithbench.methods._grad import channel_map, input_gradient


@channel_map("gradient_x_input", reduce="sum")
def gradient_x_input_channels(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """x * d logit_target / d x per channel [B,3,H,W]."""
    return x.float() * input_gradient(model, x, check_inputs(x, target))


@register(cost="backward")
def gradient_x_input(model: nn.Module, x: Tensor, target: Tensor, reduce: Reduce = "sum") -> Tensor:
    """Input times the gradient of the target logit (a first-order Taylor term relative
    to the all-zero input, i.e. the dataset-mean image in normalised space).

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        reduce: channel reduction ("sum" keeps the sign).

    Returns:
        [B,H,W] float32.
    """
    return reduce_channels(gradient_x_input_channels(model, x, target), reduce)
