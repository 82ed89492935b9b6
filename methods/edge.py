"""Edge baseline: Sobel gradient magnitude of the image, a model-independent map that
looks plausible (the edge detector of Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import check_inputs


@register(cost="free")
def edge(model: nn.Module | None, x: Tensor, target: Tensor) -> Tensor:
    """Sobel magnitude sqrt(G_x^2 + G_y^2) of the channel mean, with kernel
    [[1, 0, -1], [2, 0, -2], [1, 0, -1]] and edge-replicated borders.

    Args:
        model: unused.
        x: images [B,3,H,W] (normalised; the channel mean is taken as the intensity).
        target: unused (checked for shape).

    Returns:
        [B,H,W] float32, >= 0.
    """
    check_inputs(x, target)
    gray = F.pad(x.float().mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device)
    g = F.conv2d(gray, torch.stack([k, k.t()])[:, None])
    return g.pow(2).sum(1).sqrt()
