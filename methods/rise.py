"""RISE (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import register
from faithbench.methods._common import check_inputs, chunk_pairs
from faithbench.ops import Activation, class_scores, generator
from faithbench.params import Count, Fraction


def interpolation_matrix(out: int, n: int) -> Tensor:
    """[out, n] matrix of bilinear upsampling along one axis from n to out samples:
    half-pixel centres, and beyond the edge the mirror (whole-sample) reflection that
    the authors' ``skimage.transform.resize(order=1, mode="reflect")`` uses."""
    src = (torch.arange(out, dtype=torch.float64) + 0.5) * n / out - 0.5
    lo = src.floor()
    frac = src - lo
    period = max(2 * (n - 1), 1)
    m = torch.zeros(out, n, dtype=torch.float64)
    for offset, weight in ((0, 1 - frac), (1, frac)):
        i = (lo.long() + offset) % period
        i = torch.where(i >= n, period - i, i)
        m.index_put_((torch.arange(out), i), weight, accumulate=True)
    return m.float()


class RiseMasks:
    """The N random masks of Sec. 3.2, drawn from ``seed`` alone (shared by every sample):
    binary s x s grids with cells on with probability p, upsampled bilinearly to
    (s+1) * cell, cell = ceil(H/s) x ceil(W/s), then cropped to H x W at a random
    offset in [0, cell). Built on demand, a few at a time, on ``device``: the upsampled
    crop of a grid G is R_y G R_x^T with the crop's rows of the interpolation matrices."""

    def __init__(self, n: int, cells: int, keep_prob: float, seed: int | None,
                 size: tuple[int, int], device: torch.device) -> None:
        if n < 1 or cells < 1 or not 0 < keep_prob <= 1:
            raise ConfigError(f"rise needs n_masks >= 1, cells >= 1, 0 < keep_prob <= 1; got "
                              f"{n}, {cells}, {keep_prob}")
        g = generator(seed)
        self.grid = torch.rand(n, cells, cells, generator=g) < keep_prob
        shift = torch.rand(n, 2, generator=g)
        self.size, self.device = size, device
        cell = (math.ceil(size[0] / cells), math.ceil(size[1] / cells))
        self.ry = interpolation_matrix((cells + 1) * cell[0], cells).to(device)
        self.rx = interpolation_matrix((cells + 1) * cell[1], cells).to(device)
        self.dy = (shift[:, 0] * cell[0]).long()
        self.dx = (shift[:, 1] * cell[1]).long()

    def __call__(self, start: int, stop: int) -> Tensor:
        """Masks start..stop-1 -> [n,H,W] float32 in [0, 1]."""
        h, w = self.size
        rows = (self.dy[start:stop, None] + torch.arange(h)).to(self.device)
        cols = (self.dx[start:stop, None] + torch.arange(w)).to(self.device)
        g = self.grid[start:stop].to(self.device, torch.float32)
        return self.ry[rows] @ g @ self.rx[cols].transpose(1, 2)


@register(context=("seed", "activation"), cost="perturbation")
def rise(model: nn.Module, x: Tensor, target: Tensor, n_masks: Count = 4000, cells: Count = 7,
         keep_prob: Fraction = 0.5, seed: int | None = None, chunk: Count = 64,
         activation: Activation | None = None) -> Tensor:
    """Saliency as the mask average weighted by the class score of the masked input
    (Eq. 6): S = 1 / (N p) sum_i score(x * M_i) M_i.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W] (masked pixels become 0: the dataset mean).
        target: class per sample [B] int64.
        n_masks: N (TorchRay's pointing protocol uses 8000).
        cells: s, the grid side.
        keep_prob: p, probability that a grid cell is kept.
        seed: draws the masks (the run seed by default).
        chunk: masked images per forward.
        activation: "softmax" (the paper), "sigmoid" (multi-label) or "logit"; None
            means softmax.

    Returns:
        [B,H,W] float32.
    """
    target = check_inputs(x, target)
    n, _, h, w = x.shape
    masks = RiseMasks(int(n_masks), int(cells), float(keep_prob), seed, (h, w), x.device)
    sal = torch.zeros(n, h * w, device=x.device)
    with torch.no_grad():
        for b, i in chunk_pairs(n, int(n_masks), chunk, x.device):
            first = int(i[0])
            distinct = masks(first, int(i[-1]) + 1)  # pairs run mask-major: a short range
            m = distinct[i - first]
            score = class_scores(model(x[b] * m[:, None].to(x.dtype)).float(), target[b], activation)
            # sal[b] += score * mask as one matrix product over the chunk's distinct masks
            weights = torch.zeros(n, distinct.shape[0], device=x.device)
            weights.index_put_((b, i - first), score, accumulate=True)
            sal.addmm_(weights, distinct.flatten(1))
    return (sal / (int(n_masks) * float(keep_prob))).view(n, h, w)
