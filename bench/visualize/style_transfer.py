"""Neural style transfer (Gatys, Ecker & Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016): an image whose activations at a content
layer match a content image (Eq. 1) and whose Gram matrices at style layers match a
style image (Eq. 3-5), found by gradient descent on the pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult
from faithbench.visualize._draw import image_row
from faithbench.visualize._layers import capture, stage_layers
from faithbench.visualize._optim import initial_image, pixel_box


def gram(f: Tensor) -> Tensor:
    """Gram matrices ``G_ij = sum_k F_ik F_jk`` of feature maps [B,N,h,w] -> [B,N,N]
    (Eq. 3: N filters, each map flattened to M = h*w positions)."""
    x = f.float().flatten(2)
    return x @ x.transpose(1, 2)


@dataclass
class StyleLosses:
    """Per-sample losses [B]: content (Eq. 1) and style (Eq. 5, equal layer weights)."""

    content: Tensor
    style: Tensor


class StyleObjective:
    """The losses of Gatys et al. for fixed content and style images.

    Content: ``1/2 sum (F - P)^2`` at the content layer (Eq. 1). Style: the mean over
    style layers of ``E_l = 1 / (4 N^2 M^2) sum (G - A)^2`` (Eq. 4-5 with w_l = 1/L).
    """

    def __init__(self, model: nn.Module, content: Tensor, style: Tensor, content_layer: str,
                 style_layers: Sequence[str]) -> None:
        self.model, self.content_layer, self.style_layers = model, content_layer, list(style_layers)
        with torch.no_grad():
            self.p = capture(model, content, [content_layer])[content_layer].float()
            acts = capture(model, style, self.style_layers)
            self.a = {k: gram(v) for k, v in acts.items()}

    def __call__(self, x: Tensor) -> StyleLosses:
        acts = capture(self.model, x, [self.content_layer, *self.style_layers])
        f = acts[self.content_layer].float()
        content = 0.5 * (f - self.p).pow(2).flatten(1).sum(1)
        style = x.new_zeros(len(x))
        for name in self.style_layers:
            a = acts[name]
            n, m = a.shape[1], a.shape[-2] * a.shape[-1]
            style = style + (gram(a) - self.a[name]).pow(2).sum((1, 2)) / (4 * n**2 * m**2)
        return StyleLosses(content, style / len(self.style_layers))


def transfer_style(objective: StyleObjective, x0: Tensor, pre: Preprocess, steps: int = 300,
                   lr: float = 0.03, content_weight: float = 1.0,
                   style_weight: float = 1e4) -> tuple[Tensor, StyleLosses]:
    """Adam on the pixels to minimise ``content_weight * content + style_weight * style``
    (the paper's alpha and beta; it used L-BFGS), clipped to valid pixels each step.

    Args:
        objective: the losses for fixed content and style; x0: start [B,3,H,W] normalised.

    Returns:
        (image [B,3,H,W] normalised, losses at each step: content and style [steps,B]).
    """
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    lo, hi = pixel_box(pre, x)
    cs, ss = [], []
    for _ in range(steps):
        losses = objective(x)
        total = content_weight * losses.content + style_weight * losses.style
        (x.grad,) = torch.autograd.grad(total.sum(), x)  # nothing reaches parameters
        opt.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, hi), lo))
        cs.append(losses.content.detach())
        ss.append(losses.style.detach())
    empty = x.new_zeros(0, len(x))
    return x.detach(), StyleLosses(torch.stack(cs) if cs else empty, torch.stack(ss) if ss else empty)


@register(optimises=True)
def style_transfer(ctx: VizContext, content: int | str = 0, style: int | str = 1,
                   content_layer: str | None = None, style_layers: list[str] | None = None,
                   steps: int = 300, lr: float = 0.03, content_weight: float = 1.0,
                   style_weight: float = 1e4, init: str = "content") -> VizResult:
    """Content image, style image and the stylised result.

    Args:
        content, style: dataset positions or image files (e.g. a painting).
        content_layer: None: the fourth feature-map stage (or the last if fewer), as
            the paper's conv4_2.
        style_layers: None: one layer per stage, as the paper's conv1_1 ... conv5_1.
        steps, lr, content_weight, style_weight: see ``transfer_style``.
        init: "content" (start from the content image) or "noise" (the paper's start).
    """
    c, s = ctx.image(content), ctx.image(style)
    stages = stage_layers(ctx.model, tuple(c.shape[-2:]))
    content_layer = content_layer or stages[min(3, len(stages) - 1)]
    style_layers = list(style_layers) if style_layers else stages
    if init not in ("content", "noise"):
        raise ConfigError(f"unknown init {init!r}; valid: content, noise")
    if s.shape[-2:] != c.shape[-2:]:
        s = torch.nn.functional.interpolate(s, size=c.shape[-2:], mode="bilinear", antialias=True)
    obj = StyleObjective(ctx.model, c, s, content_layer, style_layers)
    x0 = c if init == "content" else initial_image(tuple(c.shape), ctx.spec.preprocess, "noise",
                                                   ctx.seed, ctx.device)
    x, hist = transfer_style(obj, x0, ctx.spec.preprocess, steps, lr, content_weight, style_weight)
    with torch.no_grad():
        end = obj(x)
    fig = image_row([ctx.rgb(c)[0], ctx.rgb(s)[0], ctx.rgb(x)[0]],
                    ["content", "style", f"result\ncontent {end.content.item():.3g}, "
                     f"style {end.style.item():.3g}"], size=3.0,
                    suptitle=f"{ctx.spec.name}: style transfer (content {content_layer}, style "
                             f"{', '.join(style_layers)}; {steps} steps)")
    return VizResult({"style_transfer": fig}, {
        "content_loss_start": hist.content[0].item() if steps else 0.0,
        "style_loss_start": hist.style[0].item() if steps else 0.0,
        "content_loss_end": end.content.item(), "style_loss_end": end.style.item()})
