"""Reference inputs ("baselines") for path methods."""

from __future__ import annotations

import torch
from torch import Tensor

from faithbench.errors import ConfigError, check_choice
from faithbench.ops import gaussian_blur, generator

BASELINES = ("zero", "blur", "uniform")


def make_baseline(x: Tensor, baseline: str | float | Tensor, blur_sigma: float = 5.0,
                  seed: int | None = None) -> Tensor:
    """The baseline image per sample [B,C,H,W] for inputs ``x`` [B,C,H,W].

    Args:
        baseline: "zero" (all zeros: the dataset-mean image in normalised space),
            "blur" (``x`` blurred with std ``blur_sigma`` px, radius ceil(3 sigma),
            mirrored borders), "uniform" (noise uniform in each sample's per-channel
            [min, max], one seeded draw shared by all samples, as the "uniform"
            baseline of Sturmfels et al., Distill 2020), a number
            (constant image), or a tensor broadcastable to ``x`` ([C,H,W] or [B,C,H,W]).
    """
    if isinstance(baseline, Tensor):
        return baseline.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    check_choice("baseline", baseline, BASELINES)
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "blur":
        return gaussian_blur(x, blur_sigma)
    u = torch.rand(x.shape[1:], generator=generator(seed)).to(x.device, x.dtype)
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    return lo + u * (hi - lo)


def check_steps(n_steps: int, minimum: int = 1) -> int:
    if int(n_steps) < minimum:
        raise ConfigError(f"n_steps must be at least {minimum}, got {n_steps}")
    return int(n_steps)
