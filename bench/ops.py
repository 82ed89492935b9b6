"""Tensor operations shared by methods, metrics and visualisations, written once: class
scores from logits, min-max scaling, Gaussian blur and seeded generators.

Where callers follow different published protocols (padding and truncation of a blur,
one draw per batch or per sample), the difference is a named parameter here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.errors import ConfigError, check_choice

# Metrics read a class probability (curves, drops and gains are in [0, 1]); methods may
# also weigh by the raw logit (Score-CAM's channel softmax, occlusion on logits).
Probability = Literal["softmax", "sigmoid"]
Activation = Literal[Probability, "logit"]
ACTIVATIONS = ("softmax", "sigmoid", "logit")
Padding = Literal["reflect", "replicate", "zeros"]


def class_scores(logits: Tensor, target: Tensor, activation: str | None, *,
                 via_log_softmax: bool = False) -> Tensor:
    """Score of class ``target[i]`` in row i of ``logits`` [N,K] -> [N].

    ``activation``: "softmax" (probability among classes; None means softmax),
    "sigmoid" (multi-label probability), "logit" (the raw logit).
    ``via_log_softmax``: softmax as ``exp(log_softmax)`` in float32, as the metrics have
    always computed it (methods use ``softmax``; the two differ by float rounding only).

    Example:
        >>> logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
        >>> class_scores(logits, torch.tensor([1, 0]), "softmax")
        tensor([0.5000, 0.9526])
        >>> class_scores(logits, torch.tensor([1, 0]), "logit")
        tensor([0., 2.])
    """
    activation = activation or "softmax"
    check_choice("activation", activation, ACTIVATIONS)
    t = target.to(logits.device).long()[:, None]
    if activation == "softmax" and via_log_softmax:
        return logits.float().log_softmax(1).gather(1, t)[:, 0].exp()
    if activation == "softmax":
        logits = logits.softmax(dim=1)
    elif activation == "sigmoid":
        logits = logits.sigmoid()
    return logits.gather(1, t)[:, 0]


def minmax(x: Tensor, dims: int = 2) -> Tensor:
    """Each item of ``x`` min-max scaled to [0, 1] over its last ``dims`` dimensions
    (2: per map of [B,H,W] or per channel of [B,K,H,W]); a constant item gives zeros.

    Example:
        >>> minmax(torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]]))
        tensor([[[0., 1.]],
        <BLANKLINE>
                [[0., 0.]]])
    """
    flat = x.flatten(-dims)
    shape = (*flat.shape[:-1], *([1] * dims))
    lo = flat.amin(-1).view(shape)
    span = flat.amax(-1).view(shape) - lo
    out = (x - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.zeros_like(out))


def gaussian_window(size: int, sigma: float, truncate: float = 4.0) -> Tensor:
    """``scipy.ndimage.gaussian_filter`` of a centred delta in a ``size x size`` array
    (reflect boundary, radius ``int(truncate * sigma + 0.5)``): RISE's blur kernel. The
    reflected tails fold back into the window, so it is not a truncated Gaussian.
    Returns [size,size] float32 summing to 1."""
    if size < 1 or sigma <= 0:
        raise ConfigError(f"blur kernel size {size!r} must be >= 1 and sigma {sigma!r} > 0")
    radius = int(truncate * sigma + 0.5)
    j = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (j / sigma) ** 2)
    w = w / w.sum()
    # scipy's "reflect" extension (d c b a | a b c d | d c b a) has period 2 * size.
    idx = (torch.arange(size)[:, None] + j.long()[None, :]) % (2 * size)
    idx = torch.where(idx >= size, 2 * size - 1 - idx, idx)
    k1 = (w[None, :] * (idx == size // 2)).sum(1)
    return torch.outer(k1, k1).float()


def gaussian_blur(x: Tensor, sigma: float, *, truncate: float = 3.0,
                  padding: Padding = "reflect", window: int | None = None) -> Tensor:
    """Gaussian blur of each channel of [B,C,H,W] with std ``sigma`` pixels -> [B,C,H,W].

    Separable taps ``exp(-i^2 / (2 sigma^2))``, ``|i| <= max(1, ceil(truncate * sigma))``,
    summing to 1, applied down the columns then along the rows (TorchRay's ``imsmooth``
    order) over borders extended by ``padding``: "reflect" (whole-sample mirror, scipy's
    "mirror"; "replicate" where the image is too small to mirror), "replicate" (scipy's
    "nearest"), "zeros". ``window``: RISE's protocol instead, one 2-D convolution with
    the fixed ``window x window`` kernel of :func:`gaussian_window` and zero padding.
    ``sigma <= 0`` returns a copy of ``x``.

    Example:
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 4] = 1.0  # a delta: the kernel itself
        >>> y = gaussian_blur(x, 1.0)  # taps -3..3, centre 1 / sum_i exp(-i^2 / 2) = 0.3991
        >>> round(float(y.sum()), 6), round(float(y[0, 0, 4, 4]), 4), bool(torch.allclose(y, y.mT))
        (1.0, 0.1592, True)
        >>> c = torch.full((1, 2, 4, 6), 3.0)  # replicated borders keep a constant image
        >>> bool(torch.allclose(gaussian_blur(c, 2.0, padding="replicate"), c))
        True
    """
    c = x.shape[1]
    if window is not None:
        k = gaussian_window(window, sigma).to(x)
        return F.conv2d(x, k.expand(c, 1, -1, -1), padding=window // 2, groups=c)
    if sigma <= 0:
        return x.clone()
    check_choice("padding", padding, ("reflect", "replicate", "zeros"))
    r = max(1, math.ceil(truncate * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    if padding == "reflect" and min(x.shape[-2:]) <= r:
        padding = "replicate"
    y = F.pad(x, (r, r, r, r), mode="constant" if padding == "zeros" else padding)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def generator(seed: int | None, sample: int | None = None, device: torch.device | str = "cpu",
              stream: int = 0) -> torch.Generator:
    """A generator on ``device`` fixed by its arguments. ``sample`` None: seeded by
    ``seed`` alone (None -> 0), for one draw shared by a whole call, as the methods draw
    (RISE masks, SmoothGrad noise); else by a mix of (seed, sample, stream), so each
    sample's draw is the same in every batch, as the metrics draw.

    Example:
        >>> a = torch.rand(2, generator=generator(3, sample=5, stream=1))
        >>> torch.equal(a, torch.rand(2, generator=generator(3, sample=5, stream=1)))
        True
        >>> torch.equal(a, torch.rand(2, generator=generator(3, sample=6, stream=1)))
        False
        >>> torch.equal(torch.rand(2, generator=generator(None)), torch.rand(2, generator=generator(0)))
        True
    """
    g = torch.Generator(device=device)
    if sample is None:
        return g.manual_seed(0 if seed is None else int(seed))
    return g.manual_seed(((seed or 0) * 1_000_003 + sample * 7_919 + stream * 104_729) % (2**63 - 1))
