"""Centre baseline: a Gaussian at the image centre (the "center" baseline of the
pointing game, Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import check_inputs
from faithbench.params import Positive


@register(cost="free")
def center(model: nn.Module | None, x: Tensor, target: Tensor, sigma: Positive = 0.25) -> Tensor:
    """The same centred isotropic Gaussian for every image; it ignores the model.

    Args:
        model: unused.
        x: images [B,3,H,W] (only the shape and device are read).
        target: unused (checked for shape).
        sigma: standard deviation as a fraction of the shorter image side.

    Returns:
        [B,H,W] float32, 1 at the centre.
    """
    check_inputs(x, target)
    n, _, h, w = x.shape
    s = sigma * min(h, w)
    y = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
    xx = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
    g = torch.exp(-(y[:, None] ** 2 + xx[None, :] ** 2) / (2 * s * s))
    return g.expand(n, h, w).clone()
