"""Fragility of a map under a small adversarial perturbation (Ghorbani, Abid & Zou,
"Interpretation of Neural Networks is Fragile", AAAI 2019): an iterative attack that
keeps the model's prediction but moves the map's top-k pixels elsewhere."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, finite_rows, nan_where, need_explain,
                                        per_sample_noise, predictions, sample_ids)
from faithbench.metrics._similarity import compare
from faithbench.params import Count, Fraction, Positive
from faithbench.types import Batch

DIRECTION_STREAM = 5000  # per-sample streams of the directions (5000 + step * n_directions + q)


def top_region(v: Tensor, fraction: float) -> Tensor:
    """[B,N] bool: the top ``fraction`` (at least 1) of each row, ties to the lower index
    (the rule of ``_similarity.topk_iou``)."""
    k = max(1, round(fraction * v.shape[1]))
    idx = torch.sort(-v + 0.0, dim=1, stable=True).indices[:, :k]
    return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)


def region_share(maps: Tensor, region: Tensor, absolute: bool) -> Tensor:
    """``sum_B e_i / sum |e_i|`` [B] of maps [B,H,W] over the region [B,N] (0 for a zero
    map): the paper's top-k attack objective on a map of unit mass."""
    v = maps.flatten(1)
    v = v.abs() if absolute else v
    return (v * region).sum(1) / v.abs().sum(1).clamp_min(1e-30)


def share_gradient(xp: Tensor, target: Tensor, explain: Explain, region: Tensor, absolute: bool,
                   ids: list[int], seed: int | None, step: int, n_directions: int,
                   delta: float) -> Tensor:
    """Two-sided random-direction estimate [B,C,H,W] of the gradient of ``region_share``
    at ``xp`` (SPSA, Spall 1992): ``mean_q (D(xp + delta u_q) - D(xp - delta u_q)) /
    (2 delta) u_q`` with ``u_q`` of random signs; it needs only the method's maps."""
    g = torch.zeros_like(xp, dtype=torch.float32)
    pair_target = torch.cat([target, target])
    for q in range(n_directions):
        u = per_sample_noise(tuple(xp.shape[1:]), seed, ids, xp.device, kind="uniform",
                             stream=DIRECTION_STREAM + step * n_directions + q).sign()
        maps = explain(torch.cat([xp + delta * u.to(xp.dtype), xp - delta * u.to(xp.dtype)]),
                       pair_target).detach().float()
        plus, minus = region_share(maps, torch.cat([region, region]), absolute).chunk(2)
        g += ((plus - minus) / (2 * delta))[:, None, None, None] * u
    return g / n_directions


@register(higher_is_better=True, context=("explain", "seed"),
          outputs={"adversarial_fragility_spearman": True, "adversarial_fragility_unchanged": True})
def adversarial_fragility(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                          batch: Batch | None = None, explain: Explain | None = None,
                          epsilon: Positive = 0.1, alpha: Positive = 0.025,
                          iterations: Count = 5, topk: Fraction = 0.1,
                          n_directions: Count = 4, delta: Positive = 0.01,
                          absolute: bool = False, chunk: Count = 128,
                          seed: int | None = None) -> dict[str, Tensor]:
    """Top-k attack (Ghorbani et al. 2019, Alg. 1): with ``B`` the top ``topk`` pixels of
    the given map, ``iterations`` (the paper's P) steps
    ``x_p = x + clip_epsilon(x_{p-1} - alpha * sign(grad D(x_{p-1})) - x)``, ``D`` the
    share of the map's mass in ``B`` and the clip to the L-inf ball of ``epsilon`` around
    ``x`` (model-input units; no clip to a pixel range). Among the steps whose top-1 class
    equals that of ``x``, the one with the smallest top-k intersection is kept, and its
    map compared with the given one. The paper differentiates the map itself (with
    ReLUs replaced by softplus); so that every method can be attacked, ``grad D`` is
    estimated from the method's maps at ``n_directions`` random-sign pairs
    ``x_{p-1} +- delta * u`` (see ``share_gradient``), a documented surrogate.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        epsilon, alpha, iterations: the paper's budget, step size and P.
        topk: share of pixels in ``B`` (the paper's k over the pixel count).
        n_directions, delta: random directions per step and their finite-difference
            scale. absolute: rank and measure |map|. chunk: images per forward.
        seed: directions (per sample, streams 5000 + step * n_directions + q).
    Returns:
        ``adversarial_fragility`` [B] the top-k intersection |B ∩ B_adv| / k (1: the
        attack moved nothing; higher is more robust); ``adversarial_fragility_spearman``
        [B] Spearman of the two maps at that step (1 when no step kept the prediction);
        ``adversarial_fragility_unchanged`` [B] the share of steps that kept it.
        Costs iterations * (2 n_directions + 1) explanations and iterations + 1
        forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 3))
        >>> x = torch.randn(2, 3, 4, 5)
        >>> out = adversarial_fragility(m, x, x[:, 0], torch.tensor([0, 1]),
        ...                             explain=lambda z, t: z[:, 0], epsilon=1.0, seed=0)
        >>> bool((out["adversarial_fragility"] <= 1).all())
        True
    """
    explain = need_explain(explain, "adversarial_fragility")
    h, ok = clean(heatmap)
    ids = sample_ids(batch, x.shape[0])
    region = top_region(h.abs().flatten(1) if absolute else h.flatten(1), topk)
    pred = predictions(model, x, chunk).argmax(1)
    same = compare(h, h, topk, absolute, with_ssim=False)
    best_iou, best_rho = same["topk_iou"], same["spearman"]
    kept = torch.zeros(x.shape[0], device=x.device)
    xp = x
    for p in range(iterations):
        g = share_gradient(xp, target, explain, region, absolute, ids, seed, p, n_directions, delta)
        xp = x + (xp - alpha * g.sign().to(x.dtype) - x).clamp(-epsilon, epsilon)
        hp = explain(xp, target).detach().float()
        keep = (predictions(model, xp, chunk).argmax(1) == pred) & finite_rows(hp)
        hp = torch.where(keep[:, None, None], hp, h)
        sim = compare(h, hp, topk, absolute, with_ssim=False)
        better = keep & (sim["topk_iou"] < best_iou)
        best_iou = torch.where(better, sim["topk_iou"], best_iou)
        best_rho = torch.where(better, sim["spearman"], best_rho)
        kept += keep.float()
    # |B ∩ B'| / k from the IoU I / (2k - I) of two sets of k pixels.
    inter = 2 * best_iou / (1 + best_iou)
    return {"adversarial_fragility": nan_where(inter, ok),
            "adversarial_fragility_spearman": nan_where(best_rho, ok),
            "adversarial_fragility_unchanged": nan_where(kept / iterations, ok)}
