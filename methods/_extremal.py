"""The pieces of extremal perturbation (Fong, Patrick & Vedaldi, "Understanding Deep
Networks via Extremal Perturbations and Smooth Masks", ICCV 2019) as its authors'
TorchRay code builds them: the perturbation pyramid, the smooth-max mask generator and
the area reference vector of the ranking regulariser."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.ops import gaussian_blur

_COLDNESS = 20.0  # TorchRay's smooth-max temperature


def pyramid(x: Tensor, levels: int, max_blur: float, kind: str) -> Tensor:
    """Increasingly perturbed copies of ``x`` [B,C,H,W] -> [B,L,C,H,W]; level l of L is
    blurred with sigma = max_blur (1 - l / (L-1)) (zero padding, taps to 4 sigma) or,
    for "fade", scaled by l / (L-1): level 0 is the most perturbed, level L-1 is x."""
    out = []
    for s in torch.linspace(0, 1, levels).tolist():
        out.append(gaussian_blur(x, (1 - s) * max_blur, truncate=4.0, padding="zeros")
                   if kind == "blur" else x * s)
    return torch.stack(out, 1)


def perturb(pyr: Tensor, mask: Tensor) -> Tensor:
    """Per pixel, the pyramid level ``mask * (L-1)`` linearly interpolated:
    pyr [N,L,C,H,W], mask [N,1,H,W] in [0,1] (1 keeps the input) -> [N,C,H,W]."""
    levels = pyr.shape[1]
    w = mask[:, None] * (levels - 1)
    k = w.floor()
    w = w - k
    k = k.long().expand(-1, 1, *pyr.shape[2:])
    y0 = pyr.gather(1, k)
    y1 = pyr.gather(1, (k + 1).clamp(max=levels - 1))
    return ((1 - w) * y0 + w * y1)[:, 0]


class SmoothMask:
    """Masks of spatial ``size`` from parameters on a grid of ``step`` pixels: each
    output pixel is the smooth max (softmax pooling, temperature 20) of the parameters
    near it weighted by a flat-topped kernel exp(-2 max(d / sigma - 1/2, 0)^2) of its
    distance d to their grid points (Sec. 3.3 of the paper), clamped to [0, 1]. The full
    mask has a margin of sigma pixels on every side."""

    def __init__(self, size: tuple[int, int], step: int, sigma: float, device: torch.device) -> None:
        self.size, self.step, self.margin = size, step, sigma
        self.padding = 1 + math.ceil(2 * sigma / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = tuple(math.ceil(z / step) for z in size)
        mid = [z + 2 * self.padding - 2 * self.radius for z in self.shape_in]
        self.shape_mid = tuple(mid)
        self.shape_up = tuple(step * z for z in mid)
        out = [z - step + 1 for z in self.shape_up]
        # Grid index of each output pixel's cell, in float32 as TorchRay's.
        cell = [torch.floor(torch.arange(o, dtype=torch.float32)
                            * (torch.tensor(m, dtype=torch.float32) / torch.tensor(u, dtype=torch.float32)))
                for o, m, u in zip(out, mid, self.shape_up)]
        k = torch.arange(2 * self.radius + 1, dtype=torch.float32)
        gy = cell[0][None, :] + k[:, None] - self.padding  # [K, Ho]
        gx = cell[1][None, :] + k[:, None] - self.padding  # [K, Wo]
        dy = torch.arange(out[0], dtype=torch.float32) - (sigma + step * gy)
        dx = torch.arange(out[1], dtype=torch.float32) - (sigma + step * gx)
        d = (dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2).sqrt() / sigma
        kernel = torch.exp(-2 * (d - 0.5).clamp(min=0) ** 2)  # [Ky, Kx, Ho, Wo]
        self.weight = kernel.reshape(1, -1, *out).to(device)

    def __call__(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """params [N,1,*shape_in] -> (mask [N,1,H,W], full mask with margins)."""
        n, k = len(params), 2 * self.radius + 1
        m = F.unfold(params, (k, k), padding=(self.padding,) * 2).reshape(n, -1, *self.shape_mid)
        m = m.repeat_interleave(self.step, 2).repeat_interleave(self.step, 3)
        m = m[:, :, : m.shape[2] - self.step + 1, : m.shape[3] - self.step + 1] * self.weight
        full = (m * F.softmax(_COLDNESS * m, dim=1)).sum(1, keepdim=True).clamp(0, 1)
        top = round(self.margin)
        return full[:, :, top:top + self.size[0], top:top + self.size[1]], full


def area_reference(areas: Tensor, numel: int) -> Tensor:
    """The sorted mask an area a should have: (1 - a) of ``numel`` zeros, then ones
    -> [N, numel] (the regulariser of Sec. 3.2 compares the sorted mask with it)."""
    keep = (numel * (1 - areas.double())).long()  # int() truncation, as TorchRay's
    return (torch.arange(numel, device=areas.device)[None, :] >= keep[:, None]).float()
