"""IROF, iterative removal of features (Rieger & Hansen, 2020): superpixels (scikit-image
SLIC) removed in order of their mean relevance, scored by the area over the curve of
the target's score relative to the unperturbed image."""

from __future__ import annotations

import torch
from skimage.segmentation import slic
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Activation, clean, forward_chunks, nan_where,
                                        sample_ids)
from faithbench.metrics._order import Ties, order_of
from faithbench.metrics._perturb import Substitute, substitute_image
from faithbench.ops import class_scores
from faithbench.params import Count, OddSize, Positive
from faithbench.types import Batch


def slic_segments(x: Tensor, n_segments: int, compactness: float) -> Tensor:
    """SLIC superpixels of each image of ``x`` [B,C,H,W] (its model-input values, as
    Quantus segments them), labels 0..S_i-1 [B,H,W] int64 on ``x.device``."""
    out = []
    for img in x.detach().permute(0, 2, 3, 1).double().cpu().numpy():
        seg = torch.from_numpy(slic(img, n_segments=n_segments, compactness=compactness,
                                    start_label=0))
        out.append(torch.unique(seg, return_inverse=True)[1])  # contiguous labels
    return torch.stack(out).to(x.device).long()


@register(higher_is_better=True, context=("seed", "activation"),
          curve_axes={"irof_curve": "fraction of the superpixels removed"})
def irof(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
         batch: Batch | None = None, n_segments: Count = 100, compactness: Positive = 10.0,
         substitute: Substitute = "mean", activation: Activation | None = None,
         chunk: Count = 128, seed: int | None = None, ties: Ties = "random",
         blur_kernel: OddSize = 11, blur_sigma: Positive = 5.0) -> dict[str, Tensor]:
    """IROF (Rieger & Hansen 2020): segment each image into SLIC superpixels
    (``n_segments``, ``compactness``: scikit-image's defaults, as Quantus), remove them
    cumulatively in descending order of their mean relevance (replaced by
    ``substitute``, default each image's per-channel mean), and return the area over the
    curve ``1 - AUC`` of ``f(x^(k)) / f(x)`` over the fraction k/S of superpixels removed
    (trapezoid on [0, 1]; f the target's softmax or sigmoid score). Higher is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        n_segments, compactness: SLIC parameters (on the model input's values).
        substitute: as ``deletion`` (``mean`` by default: the paper's mean value).
        ties: order of superpixels of equal mean relevance. seed: ``ties="random"`` and
            ``substitute="noise"``. chunk: images per forward.
    Returns:
        ``irof`` [B]; ``irof_curve`` [B,S+1] the relative score after 0..S_i superpixels
        (S the largest S_i of the batch; a shorter curve repeats its last point), with
        ``irof_curve_x`` [B,S+1] (k / S_i). Costs S_i + 1 forwards per sample.
    """
    h, ok = clean(heatmap)
    b = x.shape[0]
    ids = sample_ids(batch, b)
    seg = slic_segments(x, n_segments, compactness).flatten(1)  # [B,H*W]
    n_seg = seg.max(1).values + 1  # [B] superpixels per image
    s_max = int(n_seg.max())
    sums = torch.zeros(b, s_max, device=x.device).scatter_add_(1, seg, h.flatten(1))
    counts = torch.zeros(b, s_max, device=x.device).scatter_add_(1, seg, torch.ones_like(h.flatten(1)))
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, -torch.inf))
    order = order_of(means.view(b, 1, s_max), "morf", ties, seed, ids)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(s_max, device=x.device).expand(b, -1))
    pixel_rank = rank.gather(1, seg).view(b, 1, *x.shape[-2:])  # removal step of each pixel
    sub = substitute_image(x, substitute, seed, ids, blur_kernel, blur_sigma)
    # Rows: sample i with k = 0..S_i superpixels removed, samples one after another.
    lengths = (n_seg + 1).cpu()
    sample_of = torch.repeat_interleave(torch.arange(b), lengths).to(x.device)
    start = torch.cumsum(lengths, 0) - lengths
    k_of = (torch.arange(int(lengths.sum())) - torch.repeat_interleave(start, lengths)).to(x.device)

    def make(rows: Tensor) -> Tensor:
        i, k = sample_of[rows.to(x.device)], k_of[rows.to(x.device)]
        return torch.where(pixel_rank[i] < k.view(-1, 1, 1, 1), sub[i], x[i])

    logits = forward_chunks(model, int(lengths.sum()), make, chunk)
    scores = class_scores(logits, target.to(x.device).long()[sample_of], activation, via_log_softmax=True)
    # Curves padded to S+1 points by repeating each sample's last point.
    step = torch.minimum(torch.arange(s_max + 1, device=x.device)[None], n_seg[:, None])
    flat = (start.to(x.device)[:, None] + step).flatten()
    curve = scores[flat].view(b, s_max + 1)
    curve = curve / curve[:, :1]
    xs = step.float() / n_seg[:, None].float()
    aoc = 1 - torch.trapezoid(curve, xs, dim=1)
    return {"irof": nan_where(aoc, ok), "irof_curve": nan_where(curve, ok), "irof_curve_x": xs}
