"""Excitation backprop (Zhang, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention
by Excitation Backprop", ECCV 2016), TorchRay's variant."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import upsample
from faithbench.methods._common import check_inputs
from faithbench.methods._excitation import check_model, excitation


@register(context=("layer",), cost="backward", models="cnn", check_model=check_model)
def excitation_backprop(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """The marginal winning probability of Eq. 7 passed top-down from the target logit
    to ``layer``: linear layers with their positive weights and no bias, each signal
    shared among inputs in proportion to x_j w+_ij; batch norm passed through, residual
    sums split in proportion to their summands, ReLU and max-pool as their gradient.
    The map is the sum over the layer's channels (signed, as TorchRay's), upsampled
    bilinearly to the input.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: where the signal is read (the model's CAM layer by default; TorchRay's
            pointing benchmark reads VGG16 ``features.23`` (pool4), ResNet50 ``layer3``).

    Returns:
        [B,H,W] float32.
    """
    signal = excitation(model, x, check_inputs(x, target), layer)
    return upsample(signal.sum(1), x.shape[-2:])
