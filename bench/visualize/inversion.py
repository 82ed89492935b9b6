"""Image inversion: an image whose activations at a layer match those of a given image
(Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them",
CVPR 2015, Eq. 1-5: normalised Euclidean feature loss plus an alpha-norm and a total
variation regulariser). What the inversion keeps is what the layer encodes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult
from faithbench.visualize._draw import image_row
from faithbench.visualize._layers import capture
from faithbench.visualize._optim import (initial_image, pixel_box, random_shift, roll,
                                         total_variation)


def feature_distance(model: nn.Module, layer: str, x: Tensor, target: Tensor) -> Tensor:
    """Per-sample ``||phi(x) - target||^2 / ||target||^2`` at ``layer`` (Eq. 1 with the
    paper's normalisation). target: the layer's output for the reference [B,...]."""
    a = capture(model, x, [layer])[layer]
    diff = (a - target).flatten(1).pow(2).sum(1)
    return diff / target.flatten(1).pow(2).sum(1).clamp_min(1e-12)


def invert(model: nn.Module, layer: str, reference: Tensor, x0: Tensor, pre: Preprocess,
           steps: int = 300, lr: float = 0.05, tv_weight: float = 1.0, tv_beta: float = 2.0,
           alpha_weight: float = 1e-4, alpha: float = 6.0, jitter: int = 0,
           seed: int = 0) -> tuple[Tensor, Tensor]:
    """Adam on the image to minimise the normalised feature distance to ``reference``
    at ``layer`` plus ``tv_weight`` * total variation (Eq. 5) and ``alpha_weight`` *
    mean |x|^alpha (Eq. 3), clipped to valid pixels after each step.

    Args:
        model: the network; layer: dotted name; reference: images [B,3,H,W] to invert.
        x0: start [B,3,H,W] (normalised); pre: the model's preprocessing.
        jitter: random shift (pixels) of the image fed to the model each step, seeded by
            ``seed``; the target stays unshifted, which favours shift-robust images.

    Returns:
        (image [B,3,H,W] normalised, feature distance at each step [steps,B]).
    """
    with torch.no_grad():
        target = capture(model, reference, [layer])[layer].detach()
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    lo, hi = pixel_box(pre, x)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    for _ in range(steps):
        shift = random_shift(jitter, gen)
        dist = feature_distance(model, layer, roll(x, shift), target)
        reg = tv_weight * total_variation(x, tv_beta) + alpha_weight * x.abs().pow(alpha).flatten(1).mean(1)
        (x.grad,) = torch.autograd.grad((dist + reg).sum(), x)  # nothing reaches parameters
        opt.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, hi), lo))
        hist.append(dist.detach())
    return x.detach(), torch.stack(hist) if hist else x.new_zeros(0, len(x))


@register(optimises=True)
def inversion(ctx: VizContext, layers: list[str] | None = None, image: int | str = 0,
              steps: int = 300, lr: float = 0.05, tv_weight: float = 1.0,
              alpha_weight: float = 1e-4, jitter: int = 0, init: str = "noise") -> VizResult:
    """The reference image and its inversions from several layers, side by side.

    Args:
        layers: dotted names; None: one layer per feature-map resolution.
        image: dataset position or image file to invert.
        steps, lr, tv_weight, alpha_weight, jitter: see ``invert``.
        init: "noise" (the paper's random start) or "zeros" (the mean image).
    """
    from faithbench.visualize._layers import stage_layers

    ref = ctx.image(image)
    names = list(layers) if layers else stage_layers(ctx.model, tuple(ref.shape[-2:]))
    if not names:
        raise ConfigError("no layers to invert")
    outs, titles, metrics = [ctx.rgb(ref)[0]], ["reference"], {}
    for name in names:
        x0 = initial_image(tuple(ref.shape), ctx.spec.preprocess, init, ctx.seed, ctx.device)
        x, _ = invert(ctx.model, name, ref, x0, ctx.spec.preprocess, steps, lr, tv_weight,
                      alpha_weight=alpha_weight, jitter=jitter, seed=ctx.seed)
        with torch.no_grad():
            target = capture(ctx.model, ref, [name])[name]
            d0 = feature_distance(ctx.model, name, x0, target).item()
            d1 = feature_distance(ctx.model, name, x, target).item()
        outs.append(ctx.rgb(x)[0])
        titles.append(f"from {name}\ndistance {d0:.2g} -> {d1:.2g}")
        metrics[f"distance_start_{name}"], metrics[f"distance_end_{name}"] = d0, d1
    fig = image_row(outs, titles, suptitle=f"{ctx.spec.name}: inversion ({steps} Adam steps "
                                           f"from {init}, TV weight {tv_weight})")
    return VizResult({"inversion": fig}, metrics)
