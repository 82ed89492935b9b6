"""Input gradients, and the table of gradient methods' channel maps that ``smooth_grad``
averages before reducing channels (as SmoothGrad averages gradients, Smilkov et al.)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithbench.methods._relu import Rule, relu_rule

ChannelFn = Callable[..., Tensor]


@dataclass(frozen=True)
class ChannelMap:
    fn: ChannelFn  # (model, x, target, **params) -> [B,C,H,W]
    reduce: str  # the method's default channel reduction


CHANNEL_MAPS: dict[str, ChannelMap] = {}


def channel_map(name: str, reduce: str) -> Callable[[ChannelFn], ChannelFn]:
    """Declare ``fn`` as the per-channel attribution [B,C,H,W] of method ``name``."""

    def deco(fn: ChannelFn) -> ChannelFn:
        CHANNEL_MAPS[name] = ChannelMap(fn, reduce)
        return fn

    return deco


def input_gradient(model: nn.Module, x: Tensor, target: Tensor, rule: Rule | None = None) -> Tensor:
    """d(sum_i logit_i[target_i]) / d x, i.e. per sample the gradient of its own target
    logit (samples are independent in eval mode) -> [B,C,H,W] float32.

    Only the input gets a gradient (``torch.autograd.grad``), so parameters that require
    grad accumulate nothing. ``rule`` swaps the ReLU backward (guided / deconvnet).
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad(), relu_rule(rule) as mode:
        logits = model(xg)
        score = logits.gather(1, target[:, None]).sum()
    if mode is not None and mode.count == 0:
        warnings.warn(f"{rule}: the model called no ReLU, so this is the plain gradient",
                      stacklevel=3)
    (g,) = torch.autograd.grad(score, xg)
    return g.float()
