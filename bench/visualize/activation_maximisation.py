"""Activation maximisation: the image that most excites a class score or a unit, by
gradient ascent from a zero (mean) or noise image (Simonyan, Vedaldi & Zisserman,
"Deep Inside Convolutional Networks", ICLR Workshop 2014, Sec. 2, Eq. 1: the
unnormalised class score with L2 regularisation), with the regularisers of Yosinski
et al. ("Understanding Neural Networks Through Deep Visualization", ICML 2015 Deep
Learning Workshop, Sec. 3: L2 decay, Gaussian blur every few steps, clipping to valid
pixels) and jitter (random shifts each step, Mordvintsev et al. 2015)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult, class_index, class_label
from faithbench.visualize._draw import image_row
from faithbench.visualize._layers import capture
from faithbench.visualize._optim import (gaussian_blur, initial_image, normalised_step,
                                         pixel_box, random_shift, roll)

Objective = Callable[[Tensor], Tensor]  # images [B,3,H,W] -> values to maximise [B]


def class_objective(model: nn.Module, classes: Tensor) -> Objective:
    """The logit of ``classes[b]`` for image b (the unnormalised score, as Simonyan et
    al.: maximising the softmax can also lower the other classes instead)."""
    return lambda x: model(x).gather(1, classes.view(-1, 1).to(x.device))[:, 0]


def unit_objective(model: nn.Module, layer: str, units: Tensor) -> Objective:
    """The spatial mean of channel ``units[b]`` of ``layer`` for image b."""

    def f(x: Tensor) -> Tensor:
        a = capture(model, x, [layer])[layer]
        if a.dim() == 4:
            a = a.mean((-2, -1))
        return a.gather(1, units.view(-1, 1).to(x.device))[:, 0]

    return f


def maximise_activation(objective: Objective, x0: Tensor, pre: Preprocess, steps: int = 256,
                        lr: float = 0.05, decay: float = 0.002, jitter: int = 2,
                        blur_sigma: float = 0.5, blur_every: int = 4,
                        seed: int = 0) -> tuple[Tensor, Tensor]:
    """Gradient ascent on ``objective`` in normalised input space.

    Each step: shift the image by a random jitter, take the gradient of the objective,
    shift it back, step ``lr`` times the gradient scaled to unit mean |g|, shrink the
    image by ``1 - decay`` towards the mean colour (L2 decay), blur it every
    ``blur_every`` steps, clip to the valid pixel range.

    Args:
        objective: images [B,3,H,W] -> [B], summed for the gradient (samples are
            independent for a model in eval mode).
        x0: start [B,3,H,W], normalised; pre: the model's preprocessing (pixel range).
        seed: seeds the jitter.

    Returns:
        (image [B,3,H,W] normalised, objective at each step [steps,B] on the jittered
        image the gradient was taken at).
    """
    x = x0.detach().clone()
    lo, hi = pixel_box(pre, x)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    for t in range(steps):
        shift = random_shift(jitter, gen)
        xs = roll(x, shift).requires_grad_(True)
        val = objective(xs)
        (g,) = torch.autograd.grad(val.sum(), xs)
        with torch.no_grad():
            x = (x + lr * normalised_step(roll(g, (-shift[0], -shift[1])))) * (1 - decay)
            if blur_sigma > 0 and blur_every > 0 and (t + 1) % blur_every == 0:
                x = gaussian_blur(x, blur_sigma)
            x = torch.maximum(torch.minimum(x, hi), lo)
        hist.append(val.detach())
    return x, torch.stack(hist) if hist else x.new_zeros(0, len(x))


@register(uses_dataset=False, optimises=True)
def activation_maximisation(ctx: VizContext, classes: Sequence[int | str] | None = None,
                            layer: str | None = None, units: Sequence[int] | None = None,
                            steps: int = 256, lr: float = 0.05, decay: float = 0.002,
                            jitter: int = 2, blur_sigma: float = 0.5, blur_every: int = 4,
                            init: str = "noise", size: int | None = None) -> VizResult:
    """Images that maximise class logits, or units of a layer when ``layer`` is set.

    Args:
        classes: class indices or names; None: the first six classes.
        layer: None: maximise class logits; else maximise channels of this layer.
        units: channels of ``layer``; None: the first six.
        steps, lr, decay, jitter, blur_sigma, blur_every: see ``maximise_activation``.
        init: "zeros" (the mean image) or "noise".
        size: image side; None: the model's input size.
    """
    m = ctx.model
    if layer is None:
        ids = [class_index(ctx.spec, c) for c in (classes if classes is not None else
                                                  range(min(6, len(ctx.spec.class_names))))]
        objective = class_objective(m, torch.tensor(ids, device=ctx.device))
        titles = [class_label(ctx.spec, i) for i in ids]
        what, stem = "class logit", "classes"
    else:
        if classes is not None:
            raise ConfigError("set either viz.classes (class logits) or viz.layer (units), not both")
        ids = list(units) if units is not None else list(range(6))
        objective = unit_objective(m, layer, torch.tensor(ids, device=ctx.device))
        titles = [f"{layer} unit {u}" for u in ids]
        what, stem = "mean activation", f"units_{layer}"
    side = size or ctx.spec.preprocess.size
    x0 = initial_image((len(ids), 3, side, side), ctx.spec.preprocess, init, ctx.seed, ctx.device)
    x, _ = maximise_activation(objective, x0, ctx.spec.preprocess, steps, lr, decay, jitter,
                               blur_sigma, blur_every, ctx.seed)
    with torch.no_grad():
        start, end = objective(x0), objective(x)
    fig = image_row(list(ctx.rgb(x)), [f"{t}\n{what} {v:.3g}" for t, v in zip(titles, end.tolist())],
                    suptitle=f"{ctx.spec.name}: activation maximisation, {steps} steps from {init}")
    return VizResult({stem: fig},
                     {"objective_start": start.mean().item(), "objective_end": end.mean().item()})
