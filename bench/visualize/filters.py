"""Learned weights drawn as images: the first layer's filters in colour (Krizhevsky,
Sutskever & Hinton, NeurIPS 2012, Fig. 3) and, for deeper layers, each output
channel's kernel per input channel in grey. Only first-layer filters are directly
interpretable: deeper kernels act on feature maps, not pixels."""

from __future__ import annotations

import math

from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult
from faithbench.visualize._draw import mosaic_figure, tile
from faithbench.visualize._layers import first_conv, module


def conv_weight(model: nn.Module, layer: str) -> Tensor:
    """The [C_out, C_in/groups, kh, kw] kernel of conv layer ``layer``."""
    w = getattr(module(model, layer), "weight", None)
    if not isinstance(w, Tensor) or w.dim() != 4:
        raise ConfigError(f"layer {layer!r} has no 4-D convolution weight to draw")
    return w.detach()


def filter_images(weight: Tensor, bgr: bool = False) -> Tensor:
    """First-layer filters as RGB images, each scaled by its own largest |weight| so that
    grey (0.5) is zero: ``0.5 + 0.5 * w / max|w|``.

    Args:
        weight: [N,3,kh,kw] kernels on input pixels.
        bgr: the model reads BGR channels (flipped to RGB for display).

    Returns:
        [N,3,kh,kw] in [0,1].
    """
    if weight.shape[1] != 3:
        raise ConfigError(f"filters on pixels take 3 input channels, this layer takes {weight.shape[1]}")
    w = weight.flip(1) if bgr else weight
    peak = w.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
    return 0.5 + 0.5 * w / peak


def channel_kernels(weight: Tensor, max_out: int, max_in: int) -> tuple[Tensor, int]:
    """Each output channel's kernels, one grey image per (output, input) channel pair,
    scaled by that output channel's largest |weight| (grey = 0), so the relative strength
    of its inputs stays visible.

    Args:
        weight: [C_out, C_in, kh, kw]; max_out, max_in: how many of each to keep.

    Returns:
        ([n_out * n_in, 1, kh, kw] in [0,1], n_in): row ``o`` of the grid holds output
        channel ``o``'s kernels for inputs 0..n_in-1.
    """
    w = weight[:max_out, :max_in]
    peak = w.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w / peak).flatten(0, 1)[:, None], w.shape[1]


@register(uses_dataset=False)
def filters(ctx: VizContext, layer: str | None = None, max_filters: int = 64,
            max_inputs: int = 16, pad: int = 1) -> VizResult:
    """Grid of a conv layer's kernels.

    At a layer on pixels (3 input channels) each filter is one colour image; elsewhere
    each row is one output channel and each column one input channel (a depthwise
    layer, one input per output, is laid out as a square grid of grey kernels).

    Args:
        layer: dotted name of a conv layer; None: the first ``nn.Conv2d`` (the stem).
        max_filters: output channels drawn (the first ones).
        max_inputs: input channels drawn per output channel (deeper layers).
        pad: pixels between kernels in the grid.
    """
    layer = layer or first_conv(ctx.model)
    w = conv_weight(ctx.model, layer).float()
    n_out, n_in, kh, kw = w.shape
    desc = f"{ctx.spec.name} {layer}: {min(n_out, max_filters)} of {n_out} filters, {kh}x{kw}"
    if n_in == 3:
        imgs = filter_images(w[:max_filters], ctx.spec.preprocess.bgr)
        grid = tile(imgs, math.ceil(math.sqrt(imgs.shape[0])), pad)
        fig = mosaic_figure(grid, desc + " (RGB, grey = 0)", width=4.0)
    else:
        imgs, cols = channel_kernels(w, max_filters, max_inputs)
        if cols == 1:  # depthwise: one kernel per output channel
            cols = math.ceil(math.sqrt(imgs.shape[0]))
        grid = tile(imgs, cols, pad)[0]
        title = desc + (f"; rows: outputs, columns: first {cols} inputs" if n_in > 1 else "")
        fig = mosaic_figure(grid, title + " (grey = 0)", width=min(8.0, 0.35 * cols + 2))
    return VizResult({f"filters_{layer}": fig}, {"n_filters": float(n_out)})

