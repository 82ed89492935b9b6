"""Axioms and shape of a map: completeness (Sundararajan, Taly & Yan, ICML 2017),
non-sensitivity and effective complexity (Nguyen & Martinez, "On quantitative aspects of
model interpretability", 2020). Input invariance (Kindermans et al. 2017) is in
``input_invariance``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.methods._baselines import make_baseline
from faithbench.metrics import register
from faithbench.metrics._common import clean, forward_chunks, nan_where, sample_ids
from faithbench.metrics._perturb import Substitute, substitute_image
from faithbench.ops import Activation, class_scores
from faithbench.params import Count, OddSize, Positive
from faithbench.types import Batch


def relevant(heatmap: Tensor, eps: float) -> Tensor:
    """[B,H,W] bool: pixels with ``|a| / max |a| > eps`` (per sample; Nguyen & Martinez's
    non-zero attributions up to a relative threshold). An all-zero map has none."""
    a = heatmap.abs()
    peak = a.flatten(1).amax(1).view(-1, 1, 1)
    return (a > eps * peak) & (peak > 0)


@register(higher_is_better=False, context=("seed", "activation"),
          outputs={"completeness_gap": False})
def completeness(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                 batch: Batch | None = None,
                 baseline: Literal["zero", "blur", "uniform"] | float = "zero",
                 activation: Activation | None = "logit", chunk: Count = 128,
                 blur_sigma: Positive = 5.0, seed: int | None = None) -> dict[str, Tensor]:
    """Completeness (Sundararajan et al. 2017, Prop. 1): a map should sum to the change of
    the target's score from a baseline, ``sum_p e_p = f(x) - f(x')``. Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw (signed) map, summed over
            channels; target: [B] int64.
        baseline: the reference ``x'`` as ``integrated_gradients`` builds it (``zero``:
            the dataset mean image; ``blur``; ``uniform``; a number): use the evaluated
            method's own baseline. activation: ``logit`` (default: what integrated
            gradients explains), ``softmax``, ``sigmoid``, or null for the model's own.
        chunk: images per forward. blur_sigma, seed: of the ``blur`` and ``uniform`` baselines.
    Returns:
        ``completeness`` [B] the relative error ``|sum e - d| / |d|``, ``d = f(x) - f(x')``
        (NaN where ``d = 0``); ``completeness_gap`` [B] the absolute error
        ``|sum e - d|``; ``completeness_delta`` [B] ``d``. Costs 2 forwards per sample.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> x = torch.randn(1, 3, 2, 2)
        >>> e = (m[1].weight[1].view(3, 2, 2) * x[0]).sum(0, keepdim=True).detach()
        >>> completeness(m, x, e, torch.tensor([1]))["completeness"] < 1e-5
        tensor([True])
    """
    h, ok = clean(heatmap)
    b = x.shape[0]
    base = make_baseline(x, baseline, blur_sigma, seed)
    both = torch.cat([x, base])
    logits = forward_chunks(model, 2 * b, lambda r: both[r.to(x.device)], chunk)
    tgt = target.to(x.device).long()
    scores = class_scores(logits, tgt.repeat(2), activation, via_log_softmax=True).double()
    delta = scores[:b] - scores[b:]
    gap = (h.flatten(1).double().sum(1) - delta).abs()
    rel = torch.where(delta != 0, gap / delta.abs(), torch.full_like(gap, float("nan")))
    return {"completeness": nan_where(rel, ok), "completeness_gap": nan_where(gap, ok),
            "completeness_delta": nan_where(delta, ok)}


def patch_ids(h: int, w: int, patch: int, device: torch.device) -> tuple[Tensor, int]:
    """(patch index of each pixel [H*W], number of patches): ``patch`` x ``patch`` tiles in
    row-major order; the last row and column of tiles may be smaller."""
    cols = -(-w // patch)
    rows = torch.arange(h, device=device) // patch
    ids = rows[:, None] * cols + torch.arange(w, device=device)[None] // patch
    return ids.flatten(), -(-h // patch) * cols


@register(higher_is_better=False, context=("seed", "activation"),
          outputs={"non_sensitivity_fraction": False})
def non_sensitivity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                    batch: Batch | None = None, patch: Count = 1, eps: Positive = 1e-5,
                    tol: Positive = 1e-5, substitute: Substitute = "zero",
                    activation: Activation | None = "softmax", chunk: Count = 128,
                    seed: int | None = None, blur_kernel: OddSize = 11,
                    blur_sigma: Positive = 5.0) -> dict[str, Tensor]:
    """Non-sensitivity (Nguyen & Martinez 2020, Sec. 3): the size of the symmetric
    difference between the features the map gives no relevance and the features whose
    removal leaves the target's score unchanged. Each ``patch`` x ``patch`` tile is
    removed alone (all channels, replaced by ``substitute``); it has no relevance when
    every pixel has ``|a| <= eps * max |a|`` and no effect when ``|f(x') - f(x)| < tol``.
    Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        patch: tile side in pixels (1: every pixel, the paper's features).
        eps: relevance threshold relative to the map's peak (Quantus's ``eps``, applied
            there to the max-normalised |map|). tol: score change counted as none.
        substitute: what a removed tile becomes (``zero``: the dataset mean colour; see
            ``deletion``). activation: ``softmax`` (default, as Quantus), ``logit``,
            ``sigmoid``, or null for the model's own. chunk: images per forward.
        seed: ``substitute="noise"``.
    Returns:
        ``non_sensitivity`` [B] the number of tiles that violate the axiom;
        ``non_sensitivity_fraction`` [B] that number over the number of tiles.
        Costs ceil(H/patch) * ceil(W/patch) + 1 forwards per sample.
    """
    h, ok = clean(heatmap)
    b, _, height, width = x.shape
    ids = sample_ids(batch, b)
    tile, n = patch_ids(height, width, patch, x.device)
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma)
    tgt = target.to(x.device).long()

    def make(rows: Tensor) -> Tensor:
        r = rows.to(x.device)
        m = (tile[None] == (r % n)[:, None]).view(-1, 1, height, width)
        return torch.where(m, sub[r // n], x[r // n])

    # plain softmax (as Quantus), not exp(log_softmax): a threshold on the change of the
    # score flips on float rounding where |f(x') - f(x)| is near tol
    base = class_scores(forward_chunks(model, b, lambda r: x[r.to(x.device)], chunk), tgt,
                        activation, via_log_softmax=False)
    rows = torch.arange(b * n, device=x.device)
    after = class_scores(forward_chunks(model, b * n, make, chunk), tgt[rows // n],
                         activation, via_log_softmax=False)
    unchanged = (after.view(b, n) - base[:, None]).abs() < tol
    hit = relevant(h, eps).flatten(1).float()
    has_relevance = torch.zeros(b, n, device=x.device).index_add_(1, tile, hit) > 0
    count = (unchanged == has_relevance).sum(1).float()  # no effect XOR no relevance
    return {"non_sensitivity": nan_where(count, ok),
            "non_sensitivity_fraction": nan_where(count / n, ok)}


@register(higher_is_better=False, outputs={"effective_complexity_fraction": False})
def effective_complexity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                         batch: Batch | None = None, eps: Positive = 1e-5) -> dict[str, Tensor]:
    """Effective complexity (Nguyen & Martinez 2020, Sec. 3): the number of pixels whose
    relevance is not negligible, ``|a| > eps * max |a|``. Lower is better.

    Args:
        heatmap: [B,H,W]. eps: threshold relative to the map's peak (Quantus's ``eps`` on
            the max-normalised |map|). The model, input and target are not used.
    Returns:
        ``effective_complexity`` [B] the count (0 for an all-zero map, H*W for a
        constant non-zero one); ``effective_complexity_fraction`` [B] the count over H*W.
        No forward passes.

    Example:
        >>> h = torch.zeros(1, 2, 3); h[0, 0, :2] = torch.tensor([1.0, -0.5])
        >>> effective_complexity(None, None, h, None)["effective_complexity"]
        tensor([2.])
    """
    h, ok = clean(heatmap)
    count = relevant(h, eps).flatten(1).sum(1).float()
    return {"effective_complexity": nan_where(count, ok),
            "effective_complexity_fraction": nan_where(count / h[0].numel(), ok)}
