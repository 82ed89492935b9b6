"""Complexity of a map: Sparseness (Gini index; Chalasani et al., ICML 2020) and
Complexity (entropy; Bhatt et al., IJCAI 2020), as Quantus defines them, without its
epsilons and batch-wide normalisation (neither changes these scale-free scores except
through the epsilons)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import clean, nan_where
from faithbench.types import Batch


@register(higher_is_better=True)
def sparseness(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
               batch: Batch | None = None) -> dict[str, Tensor]:
    """Gini index of |map| (Chalasani et al. 2020; Hurley & Rickard 2009):
    ``sum_k (2k - n - 1) a_(k) / (n sum_k a_k)`` over the n pixel values sorted
    ascending. 0 for a uniform map, ``1 - 1/n`` for a single non-zero pixel; an all-zero
    map counts as uniform (0), the limit of Quantus's epsilon (Quantus refuses it).

    Args:
        heatmap: [B,H,W]. The model, input and target are not used.
    Returns:
        ``sparseness`` [B] in [0, 1). No forward passes.

    Example:
        >>> h = torch.zeros(1, 2, 2); h[0, 0, 0] = 1.0
        >>> sparseness(None, None, h, None)["sparseness"]
        tensor([0.7500])
    """
    h, ok = clean(heatmap)
    a = h.abs().flatten(1).double().sort(1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    total = a.sum(1)
    gini = ((2 * k - n - 1) * a).sum(1) / (n * total.clamp(min=torch.finfo(a.dtype).tiny))
    gini = torch.where(total > 0, gini, torch.zeros_like(gini))
    return {"sparseness": nan_where(gini.float(), ok)}


@register(higher_is_better=False)
def complexity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
               batch: Batch | None = None) -> dict[str, Tensor]:
    """Entropy (nats) of the normalised |map| ``p = |a| / sum |a|`` (Bhatt et al. 2020):
    ``-sum p log p`` with ``0 log 0 = 0``. 0 for a single non-zero pixel, ``log n`` for a
    uniform map; an all-zero map counts as uniform (``log n``; Quantus refuses it).

    Args:
        heatmap: [B,H,W]. The model, input and target are not used.
    Returns:
        ``complexity`` [B] in [0, log n]. No forward passes.
    """
    h, ok = clean(heatmap)
    a = h.abs().flatten(1).double()
    total = a.sum(1, keepdim=True)
    p = a / total.clamp(min=torch.finfo(a.dtype).tiny)
    ent = -torch.xlogy(p, p).sum(1)
    ent = torch.where(total[:, 0] > 0, ent, torch.full_like(ent, math.log(a.shape[1])))
    return {"complexity": nan_where(ent.float(), ok)}
