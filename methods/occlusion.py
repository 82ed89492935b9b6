"""Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014, Sec. 4.2), with Captum's sliding-window averaging."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import register
from faithbench.methods._common import check_inputs, chunk_pairs
from faithbench.ops import Activation, class_scores
from faithbench.params import Count, joint_rule


def window_rows(size: int, window: int, stride: int) -> Tensor:
    """Indicator [n, size] (bool) of each window position along one axis: starts at
    0, stride, ... while the previous window had not reached the end; the last window
    is clipped at the border, so every pixel is covered (as Captum's Occlusion)."""
    if not 1 <= window <= size:
        raise ConfigError(f"occlusion window must be between 1 and the image side {size}, got {window}")
    if not 1 <= stride <= window:
        raise ConfigError(f"occlusion stride must be between 1 and the window {window} "
                          f"(else pixels go uncovered), got {stride}")
    n = math.ceil((size - window) / stride) + 1
    starts = torch.arange(n)[:, None] * stride
    pos = torch.arange(size)[None, :]
    return (pos >= starts) & (pos < starts + window)


@register(context=("activation",), cost="perturbation")
@joint_rule(lambda p: p["stride"] <= p["window"],
            "stride={stride!r} is out of range for window={window!r}; valid: [1, window] "
            "(a longer stride leaves pixels uncovered)")
def occlusion(model: nn.Module, x: Tensor, target: Tensor, window: Count = 16, stride: Count = 8,
              fill: float = 0.0, chunk: Count = 64, activation: Activation | None = None) -> Tensor:
    """Drop of the class score when a square window is filled with ``fill``, averaged per
    pixel over the windows that cover it.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        window: side of the square window, pixels (all channels occluded together).
        stride: step between windows, pixels (at most ``window``).
        fill: value of occluded pixels in normalised space (0 = dataset-mean colour;
            the paper used a grey square).
        chunk: occluded images per forward.
        activation: how the class score is read: "softmax" (the paper's probability),
            "sigmoid", "logit" (Captum's default); None means softmax.

    Returns:
        [B,H,W] float32: per pixel, the mean of score(x) - score(x occluded) over the
        windows covering it.
    """
    target = check_inputs(x, target)
    n, _, h, w = x.shape
    rows = window_rows(h, window, stride).to(x.device)
    cols = window_rows(w, window, stride).to(x.device)
    nc = cols.shape[0]
    drop = torch.zeros(n, rows.shape[0] * nc, device=x.device)
    with torch.no_grad():
        base = class_scores(model(x).float(), target, activation)
        for b, p in chunk_pairs(n, drop.shape[1], chunk, x.device):
            hole = rows[p // nc][:, None, :, None] & cols[p % nc][:, None, None, :]  # [m,1,H,W]
            occluded = torch.where(hole, torch.tensor(fill, dtype=x.dtype, device=x.device), x[b])
            drop[b, p] = base[b] - class_scores(model(occluded).float(), target[b], activation)
    r, c = rows.float(), cols.float()
    total = torch.einsum("brc,rh,cw->bhw", drop.view(n, -1, nc), r, c)
    return total / (r.sum(0)[:, None] * c.sum(0)[None, :])
