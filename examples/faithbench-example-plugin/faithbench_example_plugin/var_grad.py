"""VarGrad (Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep
Neural Networks Lack Sensitivity to Parameter Values", ICLR Workshop 2018): the variance
of the input gradient over noisy copies of the image, where SmoothGrad takes the mean.

A plain function: it needs nothing from faithbench. The runner reads what it needs from
its signature: ``seed`` is named like a context value, so the run's seed fills it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def var_grad(model: nn.Module, x: Tensor, target: Tensor, n_samples: int = 16,
             noise: float = 0.15, seed: int | None = None) -> Tensor:
    """Per-pixel variance of d logit_target / d x over ``n_samples`` noisy inputs.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        n_samples: noisy copies per image (N).
        noise: noise standard deviation as a fraction of each image's value range
            (max - min), as SmoothGrad defines it.
        seed: seed of the noise (the run's seed when None is left to the runner).

    Returns:
        [B,H,W] float32: sum over channels of (1/N) sum_n (g_n - mean_n g_n)^2, the
        population variance of the gradients g_n (Adebayo et al. 2018, Sec. 2).
    """
    if n_samples < 1 or noise < 0:
        raise ValueError(f"n_samples={n_samples} must be >= 1 and noise={noise} >= 0")
    gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    eps = torch.randn((n_samples, *x.shape), generator=gen).to(x.device, x.dtype)
    grads = []
    for e in eps:  # one forward and backward per noisy copy of the batch
        xn = (x.detach() + noise * span * e).requires_grad_(True)
        with torch.enable_grad():
            logit = model(xn).gather(1, target.view(-1, 1)).sum()
            grads.append(torch.autograd.grad(logit, xn)[0])
    g = torch.stack(grads)  # [N,B,3,H,W]
    return g.var(dim=0, unbiased=False).sum(dim=1).float()
