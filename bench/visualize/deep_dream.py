"""DeepDream (Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into Neural
Networks", Google Research Blog 2015, and their reference notebook): gradient ascent on
the squared activations of a layer, starting from a photo, over an image pyramid
(octaves) so that patterns appear at several scales, with random jitter each step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult
from faithbench.visualize._draw import image_row
from faithbench.visualize._layers import capture
from faithbench.visualize._optim import normalised_step, pixel_box, random_shift, roll


def layer_energy(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """The dream objective: the mean of squared activations of ``layer`` per sample
    (half the squared L2 norm up to a constant, as the notebook's ``objective_L2``). [B]"""
    a = capture(model, x, [layer])[layer]
    return a.float().pow(2).flatten(1).mean(1)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def dream(model: nn.Module, layer: str, x: Tensor, pre: Preprocess, octaves: int = 4,
          octave_scale: float = 1.4, steps: int = 10, lr: float = 0.02, jitter: int = 8,
          seed: int = 0) -> tuple[Tensor, Tensor]:
    """DeepDream of images ``x``.

    The image is scaled down ``octaves - 1`` times by ``octave_scale``. From the smallest
    scale up, the detail dreamt so far is upsampled and added to that scale's image,
    ``steps`` normalised gradient-ascent steps of size ``lr`` are taken on the jittered
    image, and the new detail (result minus that scale's image) is carried up.

    Args:
        model: the network; layer: dotted name; x: images [B,3,H,W] normalised.
        pre: the model's preprocessing (the result is clipped to valid pixels).
        jitter: random shift in pixels each step, seeded by ``seed``.

    Returns:
        (dreamt images [B,3,H,W] normalised, layer energy at each step [octaves*steps, B]).
    """
    if octaves < 1 or octave_scale <= 1:
        raise ConfigError(f"octaves must be >= 1 and octave_scale > 1, got {octaves}, {octave_scale}")
    h, w = x.shape[-2:]
    sizes = [(max(8, round(h / octave_scale**i)), max(8, round(w / octave_scale**i)))
             for i in range(octaves)][::-1]
    lo, hi = pixel_box(pre, x)
    gen = torch.Generator().manual_seed(seed)
    detail = torch.zeros_like(_resize(x, sizes[0]))
    hist = []
    for size in sizes:
        base = _resize(x, size) if size != (h, w) else x
        img = base + _resize(detail, size)
        for _ in range(steps):
            shift = random_shift(jitter, gen)
            xs = roll(img, shift).requires_grad_(True)
            e = layer_energy(model, layer, xs)
            (g,) = torch.autograd.grad(e.sum(), xs)
            with torch.no_grad():
                img = img + lr * normalised_step(roll(g, (-shift[0], -shift[1])))
                img = torch.maximum(torch.minimum(img, hi), lo)
            hist.append(e.detach())
        detail = img - base
    return img.detach(), torch.stack(hist) if hist else x.new_zeros(0, len(x))


@register(optimises=True)
def deep_dream(ctx: VizContext, layer: str | None = None, image: int | str = 0,
               octaves: int = 4, octave_scale: float = 1.4, steps: int = 10,
               lr: float = 0.02, jitter: int = 8) -> VizResult:
    """An image and its dream at a layer.

    Args:
        layer: dotted name; None: the layer one stage before the last (the middle-level
            features the blog's images used; ``blocks.4`` for EfficientNet-Lite0).
        image: dataset position or image file.
        octaves, octave_scale, steps, lr, jitter: see ``dream``.
    """
    from faithbench.visualize._layers import stage_layers

    x = ctx.image(image)
    if layer is None:
        stages = stage_layers(ctx.model, tuple(x.shape[-2:]))
        layer = stages[-2] if len(stages) > 1 else stages[-1]
    out, _ = dream(ctx.model, layer, x, ctx.spec.preprocess, octaves, octave_scale, steps,
                   lr, jitter, ctx.seed)
    with torch.no_grad():
        e0, e1 = layer_energy(ctx.model, layer, x).item(), layer_energy(ctx.model, layer, out).item()
    fig = image_row([ctx.rgb(x)[0], ctx.rgb(out)[0]],
                    ["input", f"dream at {layer}\nmean a² {e0:.3g} -> {e1:.3g}"], size=3.2,
                    suptitle=f"{ctx.spec.name}: DeepDream, {octaves} octaves x {steps} steps")
    return VizResult({f"deep_dream_{layer}": fig}, {"energy_start": e0, "energy_end": e1})
