"""Activations: a layer's feature maps for one image (Zeiler & Fergus, ECCV 2014;
Yosinski et al., ICML 2015 Deep Learning Workshop), and the dataset patches that most
activate a unit, cut to its receptive field (Girshick et al., "Rich feature
hierarchies...", CVPR 2014, Sec. 3.1 and Fig. 4)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.figures import image_axes, plt
from faithbench.types import Batch
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult
from faithbench.visualize._draw import tile, to_numpy_image
from faithbench.visualize._layers import capture
from faithbench.visualize._receptive_field import crop, receptive_field


def layer_output(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    """The output of ``layer`` for ``x`` [B,3,H,W]: [B,C,h,w] (no gradient)."""
    with torch.no_grad():
        a = capture(model, x, [layer])[layer]
    if a.dim() != 4:
        raise ConfigError(f"layer {layer!r} outputs {tuple(a.shape)}, not feature maps [B,C,h,w]")
    return a.float()


@dataclass
class TopActivations:
    """Per channel, the k largest activations over a dataset, best first: values, the
    dataset position of the image and the (y, x) of the unit in the layer's map."""

    values: Tensor  # [C,k] float
    index: Tensor  # [C,k] int64 dataset positions
    y: Tensor  # [C,k] int64
    x: Tensor  # [C,k] int64
    mean_max: Tensor  # [C] mean over images of each channel's largest activation


def top_activations(model: nn.Module, batches: Iterable[Batch], layer: str, k: int = 8,
                    per_image: bool = True) -> TopActivations:
    """The k strongest activations of every channel of ``layer`` over ``batches``.

    Args:
        model: the network; batches: images with their dataset positions (``index``).
        layer: dotted module name with output [B,C,h,w].
        k: activations kept per channel.
        per_image: keep at most one position per image (its maximum, first in row-major
            order on ties), so the k patches come from k images; else any positions.

    Returns:
        TopActivations with [C,k] tensors on the model's device (fewer than k columns
        when the dataset has fewer candidates).
    """
    best = None
    max_sum, n_img = None, 0
    for batch in batches:
        a = layer_output(model, batch.images, layer)  # [B,C,h,w]
        b, c, h, w = a.shape
        flat = a.permute(1, 0, 2, 3).reshape(c, b, h * w)  # [C,B,hw]
        per_max, arg = flat.max(-1)  # [C,B]
        max_sum = per_max.sum(1) if max_sum is None else max_sum + per_max.sum(1)
        n_img += b
        img = batch.index.to(a.device)
        if per_image:
            vals, src, pos = per_max, img.expand(c, b), arg
        else:
            vals = flat.reshape(c, b * h * w)
            src = img.repeat_interleave(h * w).expand(c, -1)
            pos = torch.arange(h * w, device=a.device).repeat(b).expand(c, -1)
        cand = (vals, src, pos // w, pos % w)
        if best is not None:
            cand = tuple(torch.cat([p, q], 1) for p, q in zip(best, cand))
        top = cand[0].topk(min(k, cand[0].shape[1]), dim=1)
        best = tuple(t.gather(1, top.indices) for t in cand)
    if best is None:
        raise ConfigError("no readable images to rank activations over")
    return TopActivations(*best, mean_max=max_sum / n_img)


def top_patches_figure(patches: Tensor, units: Sequence[int], values: Tensor,
                       title: str) -> plt.Figure:
    """Rows of patches, one row per unit. patches: [U,k,3,h,w] RGB in [0,1]; values [U,k]."""
    u, k, _, h, w = patches.shape
    pad = max(1, h // 20)
    grid = tile(patches.flatten(0, 1), k, pad)
    fig = plt.figure(figsize=(0.9 * k + 0.8, 0.9 * u + 0.4))
    ax = fig.add_axes((0.1, 0.0, 0.9, 0.9 * u / (0.9 * u + 0.4)))
    ax.imshow(to_numpy_image(grid), interpolation="antialiased")
    image_axes(ax)
    for i, unit in enumerate(units):
        ax.text(-pad * 2, i * (h + pad) + h / 2, f"unit {unit}\nmax {values[i, 0]:.2g}",
                ha="right", va="center", fontsize=6)
    fig.suptitle(title, fontsize=8, y=0.995)
    return fig


@register(dataset_wide=True)
def top_patches(ctx: VizContext, layer: str | None = None, units: list[int] | None = None,
                num_units: int = 6, k: int = 8, per_image: bool = True) -> VizResult:
    """Dataset patches that most activate units of a layer, cut to their receptive field.

    Args:
        layer: dotted module name; None: the model's CAM layer (its last conv block).
            Earlier layers have smaller fields (EfficientNet-Lite0: ``blocks.2`` 67 px,
            ``blocks.3`` 147 px; the last block's field is larger than the image).
        units: channels to show; None: the ``num_units`` channels with the largest mean
            per-image maximum over the selected samples.
        k: patches per unit; per_image: at most one patch per image.
    """
    layer = layer or ctx.spec.cam_layer
    if layer is None:
        raise ConfigError(f"model {ctx.spec.name!r} has no default layer: set viz.layer=<module>")
    if units is not None:  # checked before the pass over the data
        n = layer_output(ctx.model, ctx.gather(ctx.selection()[:1]).images, layer).shape[1]
        bad = [u for u in units if not 0 <= u < n]
        if bad:
            raise ConfigError(f"unit {bad[0]} is outside 0..{n - 1} of layer {layer!r}")
    top = top_activations(ctx.model, ctx.batches(), layer, k, per_image)
    if units is None:
        units = top.mean_max.topk(min(num_units, top.mean_max.numel())).indices.tolist()
    wanted = sorted(set(top.index[units].flatten().tolist()))
    batch = ctx.gather(wanted)
    field = receptive_field(ctx.model, layer, tuple(batch.images.shape[-2:]))
    rgb = ctx.rgb(batch.images)
    where = {i: j for j, i in enumerate(batch.index.tolist())}
    patches = torch.stack([torch.stack([
        crop(rgb[where[int(top.index[u, j])]], field, int(top.y[u, j]), int(top.x[u, j]))
        for j in range(top.values.shape[1])]) for u in units])
    title = (f"{ctx.spec.name} {layer}: top {top.values.shape[1]} patches per unit over "
             f"{len(ctx.selection())} images\nreceptive field {field.size[0]}x{field.size[1]} px "
             "(grey: outside the image)")
    fig = top_patches_figure(patches, units, top.values[units], title)
    return VizResult({f"top_patches_{layer}": fig}, {"receptive_field": float(field.size[0])})


@register()
def feature_maps(ctx: VizContext, layer: str | None = None, image: int | str = 0,
                     max_channels: int = 32, scale: str = "layer") -> VizResult:
    """The feature maps of one image at a layer, one panel per channel.

    Args:
        layer: dotted module name; None: the model's CAM layer.
        image: dataset position or image file.
        max_channels: channels drawn, strongest mean activation first.
        scale: "layer": one colour scale for all maps (a weak channel looks dark);
            "channel": each map stretched to its own range (shows the pattern of weak
            channels too).
    """
    if scale not in ("layer", "channel"):
        raise ConfigError(f"scale must be 'layer' or 'channel', got {scale!r}")
    layer = layer or ctx.spec.cam_layer
    if layer is None:
        raise ConfigError(f"model {ctx.spec.name!r} has no default layer: set viz.layer=<module>")
    x = ctx.image(image)
    a = layer_output(ctx.model, x, layer)[0]  # [C,h,w]
    order = a.mean((1, 2)).argsort(descending=True)[:max_channels]
    maps = a[order]
    lo = maps.amin((1, 2), keepdim=True) if scale == "channel" else maps.min()
    hi = maps.amax((1, 2), keepdim=True) if scale == "channel" else maps.max()
    maps = (maps - lo) / (hi - lo).clamp_min(1e-12)
    ncol = min(8, maps.shape[0])
    grid = tile(maps[:, None], ncol, pad=1, pad_value=float("nan"))[0]
    nrows = -(-maps.shape[0] // ncol)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, max(2.2, 0.62 * nrows + 0.6)),
                                 width_ratios=(1, 2.4))
    a0.imshow(to_numpy_image(ctx.rgb(x)[0]))
    a0.set_title("input", fontsize=7)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    a1.imshow(grid.cpu().numpy(), cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    a1.set_title(f"{layer}: {maps.shape[0]} of {a.shape[0]} channels, strongest first "
                 f"({scale} colour scale)", fontsize=7)
    for ax in (a0, a1):
        image_axes(ax)
    fig.tight_layout()
    return VizResult({f"feature_maps_{layer}": fig}, {"channels": float(a.shape[0])})
