"""Noisy linear imputation (Rong et al., ICML 2022, Sec. 4.2), batched in torch.

Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the four
edge neighbours, 1/12 for the four diagonal ones; neighbours outside the image are left
out and the remaining weights are not renormalised, as in the paper's code). The removed
pixels of one image form the sparse linear system

    (D - W_uu) v = W_uk x_k,

``D`` the in-image neighbour weight of each removed pixel, ``W_uu`` the weights between
removed pixels and ``W_uk x_k`` the weighted sum of known neighbours. ``D - W_uu`` is
symmetric and positive definite whenever the image keeps at least one pixel (every
removed region then borders a known pixel), so it is solved by Jacobi-preconditioned
conjugate gradients on the whole batch at once: one weighted neighbour sum per
iteration for all images and channels, on the images' device, in float64. Gaussian
noise is then added to the removed pixels (the "noisy" part: it hides the imputed
pixels' smoothness, which a model could otherwise read as the mask's shape).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.errors import ConfigError

EDGE, DIAGONAL = 1 / 6, 1 / 12  # neighbour weights of the paper's Eq. (3)


def _neighbour_sum(v: Tensor) -> Tensor:
    """Weighted sum of the 8 neighbours of every pixel of ``v`` [N,H,W] (zero outside):
    shifted slices of the zero-padded planes, about 3x faster than a 3x3 float64
    convolution on the CPU."""
    h, w = v.shape[-2:]
    p = F.pad(v, (1, 1, 1, 1))
    edge = p[:, :h, 1:w + 1] + p[:, 2:, 1:w + 1] + p[:, 1:h + 1, :w] + p[:, 1:h + 1, 2:]
    diagonal = p[:, :h, :w] + p[:, :h, 2:] + p[:, 2:, :w] + p[:, 2:, 2:]
    return EDGE * edge + DIAGONAL * diagonal


def linear_impute(x: Tensor, removed: Tensor, tol: float = 1e-10,
                  max_iter: int | None = None) -> Tensor:
    """The noise-free imputation: ``x`` with its ``removed`` pixels replaced by the
    solution of the neighbour system (see the module docstring).

    Args:
        x: [N,C,H,W] images; removed: [N,H,W] bool, True where the pixel is imputed
            (every image must keep at least one pixel).
        tol: CG stops when each system's residual norm is below ``tol`` times the norm
            of its right-hand side. max_iter: cap on iterations (default 10 * (H + W)
            + 100; the iteration count grows with the width of the removed regions).
    Returns:
        [N,C,H,W] in ``x``'s dtype; known pixels are ``x``'s own values.
    """
    n, c, h, w = x.shape
    if bool(removed.flatten(1).all(1).any()):
        raise ConfigError("linear imputation needs at least one kept pixel per image; "
                          "an image had all its pixels removed (use fractions below 1)")
    m = removed[:, None].expand(n, c, h, w).reshape(n * c, h, w).to(torch.float64)
    known = x.reshape(n * c, h, w).to(torch.float64) * (1 - m)
    diag = _neighbour_sum(torch.ones_like(m[:1]))  # in-image weight sum of every pixel
    inv_diag = 1 / diag

    def apply(v: Tensor) -> Tensor:  # (D - W_uu) v on the removed pixels, 0 elsewhere
        return m * (diag * v - _neighbour_sum(v * m))

    rhs = m * _neighbour_sum(known)
    v = torch.zeros_like(rhs)
    r = rhs.clone()
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum((1, 2))
    stop = tol * rhs.norm(dim=(1, 2))
    for _ in range(max_iter if max_iter is not None else 10 * (h + w) + 100):
        if bool((r.norm(dim=(1, 2)) <= stop).all()):
            break
        ap = apply(p)
        pap = (p * ap).sum((1, 2))
        alpha = torch.where(pap > 0, rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
        v = v + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        z = inv_diag * r
        rz_new = (r * z).sum((1, 2))
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta[:, None, None] * p
        rz = rz_new
    return (known + m * v).reshape(n, c, h, w).to(x.dtype)


def noisy_linear_impute(x: Tensor, removed: Tensor, noise: Tensor) -> Tensor:
    """``linear_impute(x, removed)`` plus ``noise`` [N,C,H,W] (already scaled) on the
    removed pixels only."""
    return linear_impute(x, removed) + removed[:, None].to(x.dtype) * noise.to(x.dtype)
