"""Occlusion sensitivity for a chosen class (Zeiler & Fergus, "Visualizing and
Understanding Convolutional Networks", ECCV 2014, Sec. 4.2 and Fig. 7): how much the
class probability drops when a square around each pixel is hidden. The map is the
``occlusion`` attribution method; this module picks the class and draws it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from faithbench.errors import ConfigError
from faithbench.figures import image_axes, plt
from faithbench.pixels import blend
from faithbench.methods.occlusion import occlusion
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult, class_index, class_label, labels_1d
from faithbench.visualize._draw import to_numpy_image


@register()
def occlusion_sensitivity(ctx: VizContext, images: Sequence[int] = (0, 1, 2, 3),
                          target: int | str | None = None, window: int | None = None,
                          stride: int | None = None, fill: float = 0.0,
                          activation: str | None = None) -> VizResult:
    """Images with the drop of one class's score under a sliding occluder drawn over them.

    Args:
        images: dataset positions.
        target: None: each image's label; "pred": the model's top-1 class; else a class
            index or exact class name for every image.
        window: occluder side in pixels; None: an eighth of the input side.
        stride: step of the occluder; None: half the window.
        fill: occluder value in normalised input space (0 = the normalisation mean, grey
            for most models; the paper used a grey square).
        activation: class score read as "softmax" (the paper's probability), "sigmoid"
            or "logit"; None: the model's (softmax, sigmoid for multi-label).
    """
    b = ctx.gather(list(images))
    x = b.images
    with torch.no_grad():
        logits = ctx.model(x).float()
    if target is None:
        t = labels_1d(b.labels).to(x.device)
    elif target == "pred":
        t = logits.argmax(1)
    else:
        t = torch.full((len(x),), class_index(ctx.spec, target), device=x.device)
    win = window or max(1, x.shape[-1] // 8)
    step = stride or max(1, win // 2)
    act = activation or ctx.spec.activation
    if act not in ("softmax", "sigmoid", "logit"):
        raise ConfigError(f"activation must be softmax, sigmoid or logit, got {act!r}")
    maps = occlusion(ctx.model, x, t, window=win, stride=step, fill=fill, activation=act)
    score = {"softmax": lambda z: z.softmax(1), "sigmoid": torch.sigmoid,
             "logit": lambda z: z}[act](logits).gather(1, t[:, None])[:, 0]
    rgb = ctx.rgb(x)
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.1), squeeze=False)
    for i in range(n):
        img = to_numpy_image(rgb[i])
        axes[0][i].imshow(img)
        axes[0][i].set_title(f"{class_label(ctx.spec, int(t[i]))}\n{act} {score[i]:.3g}", fontsize=7)
        m = maps[i].cpu().numpy()
        axes[1][i].imshow(blend(img, m, signed=True))  # each map on its own scale
        axes[1][i].set_title(f"max drop {m.max():.3g}", fontsize=7)
        for ax in axes[:, i]:
            image_axes(ax)
    fig.suptitle(f"{ctx.spec.name}: occlusion sensitivity, {win} px window, stride {step} "
                 "\n(red: the score drops when hidden, blue: it rises; each map on its own scale)",
                 fontsize=8)
    fig.tight_layout()
    return VizResult({"occlusion": fig}, {"mean_max_drop": float(maps.flatten(1).amax(1).mean())})
