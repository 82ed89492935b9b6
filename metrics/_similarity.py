"""Batched similarity of two maps (or of per-sample rows), for the robustness, sanity and
faithfulness metrics.

Rules for degenerate maps, shared by every metric that uses these: a constant map has no
ranking, so its Spearman correlation and top-k IoU with a non-constant map are 0 and
with another constant map 1 (identical explanations); SSIM compares the [0,1] min-max
normalised maps, where a constant map becomes all zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def average_ranks(v: Tensor) -> Tensor:
    """Ranks 1..N of each row of ``v`` [B,N], ties sharing their average rank (as
    scipy.stats.rankdata). Returns [B,N] float64."""
    b, n = v.shape
    s, perm = torch.sort(v, dim=1, stable=True)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    group = new.long().cumsum(1) - 1 + torch.arange(b, device=v.device)[:, None] * n
    pos = torch.arange(1, n + 1, device=v.device, dtype=torch.float64).expand(b, n)
    total = torch.zeros(b * n, dtype=torch.float64, device=v.device).index_add_(0, group.flatten(), pos.flatten())
    count = torch.zeros(b * n, dtype=torch.float64, device=v.device).index_add_(
        0, group.flatten(), torch.ones(b * n, dtype=torch.float64, device=v.device))
    avg = (total / count.clamp(min=1))[group]
    return torch.empty_like(avg).scatter_(1, perm, avg)


def constant(v: Tensor) -> Tensor:
    """[B,N] -> [B] bool: the row has a single value."""
    return v.max(1).values == v.min(1).values


def degenerate(a: Tensor, b: Tensor, value: Tensor) -> Tensor:
    """``value`` [B] with the constant-map rule applied (1 if both constant, 0 if one)."""
    ca, cb = constant(a), constant(b)
    fixed = (ca & cb).to(value.dtype)
    return torch.where(ca | cb, fixed, value)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the rows of ``a``, ``b`` [B,N], in float64; 0 where either
    row is constant (a map that predicts no difference between perturbations, or a
    model that shows none, has no linear relation). Returns [B] float32."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den)).float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of rows of ``a``, ``b`` [B,N] (average ranks for ties),
    with the constant-map rule. Returns [B] float32."""
    return degenerate(a, b, pearson(average_ranks(a), average_ranks(b)))


def topk_iou(a: Tensor, b: Tensor, fraction: float) -> Tensor:
    """IoU of the top ``fraction`` of entries (at least 1) of rows of ``a``, ``b`` [B,N];
    ties go to the lower index (stable sort). Returns [B] float32."""
    n = a.shape[1]
    k = max(1, round(fraction * n))

    def top(v: Tensor) -> Tensor:
        idx = torch.sort(-v + 0.0, dim=1, stable=True).indices[:, :k]
        return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)

    inter = (top(a) & top(b)).sum(1).double()
    return degenerate(a, b, inter / (2 * k - inter)).float()


def ssim(a: Tensor, b: Tensor, win_size: int = 7) -> Tensor:
    """Mean SSIM of maps [B,H,W] after per-map min-max normalisation to [0,1]
    (data range 1), with scikit-image's defaults: a uniform ``win_size`` window, sample
    covariance, K1 = 0.01, K2 = 0.03, averaged over windows fully inside the map. The
    window shrinks to the largest odd size that fits maps smaller than 7 pixels.
    Returns [B] float32."""
    from faithbench.ops import minmax

    w = min(win_size, min(a.shape[-2:]))
    w = w if w % 2 else w - 1
    x, y = minmax(a.double())[:, None], minmax(b.double())[:, None]

    def mean(z: Tensor) -> Tensor:
        return F.avg_pool2d(z, w, stride=1)

    ux, uy = mean(x), mean(y)
    norm = w * w / (w * w - 1) if w > 1 else 1.0
    vx, vy = norm * (mean(x * x) - ux * ux), norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def compare(a: Tensor, b: Tensor, topk: float, absolute: bool,
            valid: Tensor | None = None, with_ssim: bool = True) -> dict[str, Tensor]:
    """Spearman, top-k IoU (and SSIM when ``valid`` is None) of maps [B,H,W], on |map|
    if ``absolute``, over the pixels where ``valid`` [H,W] is True if given."""
    if absolute:
        a, b = a.abs(), b.abs()
    fa, fb = a.flatten(1), b.flatten(1)
    if valid is not None:
        keep = valid.flatten().to(a.device)
        fa, fb = fa[:, keep], fb[:, keep]
    out = {"spearman": spearman(fa, fb), "topk_iou": topk_iou(fa, fb, topk)}
    if with_ssim and valid is None:
        out["ssim"] = ssim(a, b)
    return out
