"""How much of a map lies inside the target class's ground truth: relevance mass and
rank accuracy (Arras, Osman & Samek, Information Fusion 2022, CLEVR-XAI), attribution
localisation (Kohlbrenner et al., IJCNN 2020) and top-k intersection (Theiner, Müller-Budack
& Ewerth, WACV 2022).

The ground truth is ``faithbench.regions.class_region``: the union of the class's masks
where the dataset has masks, else of its boxes (``ground_truth`` picks one), at input
resolution. Which relevance counts is a named convention (``relevance``):

- ``positive``: ``max(map, 0)``, evidence for the class (Kohlbrenner et al.'s ratio);
- ``absolute``: ``|map|`` (Quantus's ``abs=True``);
- ``signed``: the map as is (Quantus's ``abs=False``); a mass ratio is then unbounded
  when positive and negative relevance nearly cancel.

A map with no relevance mass at all (all-zero, or all-negative under ``positive``) counts
as uniform and scores the ground truth's area fraction, the chance level, as
``energy_pointing_game`` does; Quantus returns NaN or 0 there.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import clean, nan_where, need_batch, sample_ids
from faithbench.metrics._order import Ties, order_of
from faithbench.metrics.pointing import GroundTruthChoice
from faithbench.params import Count
from faithbench.regions import class_region
from faithbench.types import Batch

Relevance = Literal["positive", "absolute", "signed"]
NAN = float("nan")


def relevance_of(h: Tensor, rule: str) -> Tensor:
    """The relevance a metric counts, [B,H,W]: ``positive`` max(h, 0), ``absolute``
    |h|, ``signed`` h (``rule`` is the metric's declared, checked parameter)."""
    if rule == "positive":
        return h.clamp(min=0)
    return h.abs() if rule == "absolute" else h


def regions(batch: Batch, target: Tensor, hw: tuple[int, int], ground_truth: str,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """(ground truth of each sample's target class as bool [B,H,W], [B] bool: the class
    has ground truth). Rows without ground truth are all False."""
    rows, has = [], []
    for i, t in enumerate(target.tolist()):
        m = class_region(batch, i, t, hw, (1.0, 1.0), ground_truth)
        has.append(m is not None)
        rows.append(torch.zeros(hw, dtype=torch.bool) if m is None else m)
    return torch.stack(rows).to(device), torch.tensor(has, device=device)


def mass_share(r: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """(share of the relevance mass inside the ground truth, [B]; area fraction of the
    ground truth, [B]) of relevance ``r`` [B,H,W] and ``gt`` [B,H,W] bool, in float64.
    A row whose mass is 0 scores its area fraction (a uniform map)."""
    r, g = r.flatten(1).double(), gt.flatten(1)
    total = r.sum(1)
    inside = (r * g).sum(1)
    area = g.double().mean(1)
    zero = total == 0
    return torch.where(zero, area, inside / torch.where(zero, torch.ones_like(total), total)), area


@register(higher_is_better=True, needs={"boxes"})
def relevance_mass_accuracy(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                            batch: Batch, relevance: Relevance = "positive",
                            ground_truth: GroundTruthChoice = "auto") -> dict[str, Tensor]:
    """Relevance mass accuracy (Arras et al. 2022): ``R_within / R_total``, the
    share of the map's relevance that falls inside the target class's ground truth.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: masks/boxes in input pixels. The
            model is not used.
        relevance: ``positive`` | ``absolute`` | ``signed`` (module doc).
        ground_truth: ``auto`` (masks if the dataset has them, else boxes) | ``masks`` |
            ``boxes``.
    Returns:
        ``relevance_mass_accuracy`` [B] (in [0,1] unless ``signed``), NaN where the class
        has no ground truth. No forward passes.

    Example:
        >>> from faithbench.types import Batch
        >>> m = torch.zeros(1, 1, 2, 4, dtype=torch.bool); m[0, 0, :, :2] = True
        >>> b = Batch(images=torch.zeros(1, 3, 2, 4), labels=torch.zeros(1, dtype=torch.long),
        ...           ids=["a"], index=torch.arange(1), masks=[m[0]], mask_labels=[torch.tensor([0])])
        >>> h = torch.tensor([[[3.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, -2.0]]])
        >>> relevance_mass_accuracy(None, b.images, h, torch.tensor([0]), b)["relevance_mass_accuracy"]
        tensor([0.8000])
    """
    batch = need_batch(batch, "relevance_mass_accuracy")
    h, ok = clean(heatmap)
    gt, has = regions(batch, target, tuple(h.shape[-2:]), ground_truth, h.device)
    share, _ = mass_share(relevance_of(h, relevance), gt)
    return {"relevance_mass_accuracy": nan_where(share, ok & has)}


def top_hits(r: Tensor, gt: Tensor, k: Tensor, ties: str, seed: int | None,
             ids: list[int]) -> Tensor:
    """Ground-truth pixels among each row's ``k[i]`` most relevant pixels, [B] float64:
    pixels ranked by ``r`` [B,H,W] descending, equal values ordered by ``ties``."""
    order = order_of(r, "morf", ties, seed, ids)
    hit = gt.flatten(1).gather(1, order)
    first = torch.arange(order.shape[1], device=r.device)[None, :] < k[:, None]
    return (hit & first).sum(1).double()


@register(higher_is_better=True, needs={"boxes"}, context=("seed",))
def relevance_rank_accuracy(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                            batch: Batch, relevance: Relevance = "signed", ties: Ties = "random",
                            ground_truth: GroundTruthChoice = "auto",
                            seed: int | None = None) -> dict[str, Tensor]:
    """Relevance rank accuracy (Arras et al. 2022): with K the size of the
    ground truth, the share of the K most relevant pixels that lie inside it.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: masks/boxes in input pixels. The
            model is not used.
        relevance: what is ranked (module doc); ``signed`` ranks the map as is.
        ties: order of equal values (``faithbench.metrics._order``): ``random`` (per
            sample, seeded), ``stable`` (raster order) or ``rise`` (numpy's argsort, as
            Quantus). A constant map ranks by ties alone: about the area fraction under
            ``random``.
        ground_truth: ``auto`` | ``masks`` | ``boxes``. seed: null for the run seed.
    Returns:
        ``relevance_rank_accuracy`` [B] in [0,1], NaN where the class has no ground
        truth. No forward passes.
    """
    batch = need_batch(batch, "relevance_rank_accuracy")
    h, ok = clean(heatmap)
    gt, has = regions(batch, target, tuple(h.shape[-2:]), ground_truth, h.device)
    k = gt.flatten(1).sum(1)
    hits = top_hits(relevance_of(h, relevance), gt, k, ties, seed, sample_ids(batch, h.shape[0]))
    return {"relevance_rank_accuracy": nan_where(hits / k.clamp(min=1), ok & has)}


@register(higher_is_better=True, needs={"boxes"},
          outputs={"attribution_localisation_weighted": True})
def attribution_localisation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                             batch: Batch, relevance: Relevance = "positive",
                             ground_truth: GroundTruthChoice = "boxes") -> dict[str, Tensor]:
    """Attribution localisation (Kohlbrenner et al. 2020): the inside-total
    relevance ratio ``mu = R_in / R_tot`` of the positive relevance in the target
    class's bounding boxes, and its size-weighted form ``mu_w = mu * S_tot / S_in``
    (pixels of the image over pixels in the boxes), 1 for a uniform map.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: boxes (or masks) in input pixels.
            The model is not used.
        relevance: ``positive`` (the paper) | ``absolute`` (Quantus's default) |
            ``signed``.
        ground_truth: ``boxes`` (the paper) | ``masks`` | ``auto``.
    Returns:
        ``attribution_localisation`` [B] mu; ``attribution_localisation_weighted`` [B]
        mu_w. NaN where the class has no ground truth. No forward passes.
    """
    batch = need_batch(batch, "attribution_localisation")
    h, ok = clean(heatmap)
    gt, has = regions(batch, target, tuple(h.shape[-2:]), ground_truth, h.device)
    mu, area = mass_share(relevance_of(h, relevance), gt)
    good = ok & has
    return {"attribution_localisation": nan_where(mu, good),
            "attribution_localisation_weighted": nan_where(mu / area.clamp(min=1e-300), good)}


@register(higher_is_better=True, needs={"boxes"}, context=("seed",),
          outputs={"top_k_intersection_influence": True})
def top_k_intersection(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                       batch: Batch, k: Count = 1000, relevance: Relevance = "signed",
                       ties: Ties = "random", ground_truth: GroundTruthChoice = "auto",
                       seed: int | None = None) -> dict[str, Tensor]:
    """Top-k intersection (Theiner et al. 2022): the share of the ``k`` most relevant
    pixels that lie inside the target class's ground truth; its concept-influence form
    divides by the ground truth's area fraction (1 for a map that ignores it).

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: masks/boxes in input pixels. The
            model is not used.
        k: pixels taken (Quantus's default 1000, 2 % of a 224 x 224 map); a map with
            fewer pixels takes them all.
        relevance: what is ranked (module doc). ties: order of equal values, as in
            ``relevance_rank_accuracy``. ground_truth: ``auto`` | ``masks`` | ``boxes``.
        seed: null for the run seed.
    Returns:
        ``top_k_intersection`` [B] in [0,1]; ``top_k_intersection_influence`` [B] the
        share over the area fraction. NaN where the class has no ground truth. No
        forward passes.
    """
    batch = need_batch(batch, "top_k_intersection")
    h, ok = clean(heatmap)
    gt, has = regions(batch, target, tuple(h.shape[-2:]), ground_truth, h.device)
    n = min(k, h[0].numel())
    kk = torch.full((h.shape[0],), n, device=h.device)
    share = top_hits(relevance_of(h, relevance), gt, kk, ties, seed,
                     sample_ids(batch, h.shape[0])) / n
    area = gt.flatten(1).double().mean(1)
    good = ok & has
    return {"top_k_intersection": nan_where(share, good),
            "top_k_intersection_influence": nan_where(share / area.clamp(min=1e-300), good)}
