"""Pieces shared by the image-optimisation visualisations: the valid pixel box in
normalised space, the regularisers of Yosinski et al. (ICML 2015 DL Workshop: L2 decay,
Gaussian blur, clipping), jitter (Mordvintsev et al., "Inceptionism", 2015) and total
variation (Mahendran & Vedaldi, CVPR 2015, Eq. 5). Everything stays on the image's device."""

from __future__ import annotations

import torch
from torch import Tensor

from faithbench import ops
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess

INITS = ("zeros", "noise")


def pixel_box(pre: Preprocess, like: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised values of black and white pixels, [1,3,1,1] each (low, high)."""
    ones = torch.ones(1, 3, 1, 1, dtype=like.dtype, device=like.device)
    a, b = pre.normalize(ones * 0), pre.normalize(ones)
    return torch.minimum(a, b), torch.maximum(a, b)


def initial_image(shape: tuple[int, ...], pre: Preprocess, init: str, seed: int,
                  device: torch.device) -> Tensor:
    """Start of an optimisation in normalised space: "zeros" is the normalisation mean
    (Simonyan et al.'s zero image of a mean-subtracted input), "noise" is mid-grey plus
    Gaussian pixel noise (sigma 0.1 of the pixel range) drawn from ``seed``."""
    if init == "zeros":
        return torch.zeros(shape, device=device)
    if init == "noise":
        g = torch.Generator().manual_seed(seed)
        rgb = (0.5 + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1).to(device)
        return pre.normalize(rgb)
    raise ConfigError(f"unknown init {init!r}; valid: {', '.join(INITS)}")


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Yosinski et al.'s blur regulariser: a separable Gaussian of [B,C,H,W] (radius
    ceil(3 sigma), replicated borders) -> [B,C,H,W]; ``sigma <= 0``: a copy of ``x``."""
    return ops.gaussian_blur(x, sigma, padding="replicate")


def random_shift(max_shift: int, gen: torch.Generator) -> tuple[int, int]:
    """A (dy, dx) jitter drawn uniformly from [-max_shift, max_shift]^2 (CPU generator,
    so no device synchronisation)."""
    if max_shift <= 0:
        return 0, 0
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
    return dy, dx


def roll(x: Tensor, shift: tuple[int, int]) -> Tensor:
    """Circular shift of the last two dimensions."""
    return torch.roll(x, shifts=shift, dims=(-2, -1)) if any(shift) else x


def normalised_step(g: Tensor) -> Tensor:
    """The gradient scaled per sample to unit mean |g| (step sizes do not depend on
    the objective's scale, as in the DeepDream notebook)."""
    return g / g.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))


def total_variation(x: Tensor, beta: float = 2.0) -> Tensor:
    """Per-sample total variation ``sum_ij ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2)^(beta/2)``
    averaged over positions and channels (Mahendran & Vedaldi, Eq. 5). Returns [B]."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx * dx + dy * dy + 1e-12).pow(beta / 2).flatten(1).mean(1)
