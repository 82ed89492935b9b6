"""Class sensitivity: Random Logit (Sixt, Granz & Landgraf, ICML 2020): a map
that explains the class should differ from the map of another class on the same input.
The seeds' "class discrimination"."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, check_choice
from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, finite_rows, nan_where, need_explain,
                                        predictions, sample_ids)
from faithbench.metrics._similarity import compare
from faithbench.ops import generator
from faithbench.params import Count, Fraction
from faithbench.types import Batch

Similarity = Literal["ssim", "spearman", "topk_iou"]
SIMILARITIES = ["ssim", "spearman", "topk_iou"]
OTHER_CLASS_STREAM = 1300  # per-sample generator stream of the other class


def other_classes(target: Tensor, num_classes: int, seed: int | None, ids: list[int]) -> Tensor:
    """One class per sample drawn uniformly from the ``num_classes - 1`` classes other
    than ``target[i]``, from ``generator(seed, ids[i], OTHER_CLASS_STREAM)``. [B] int64
    on the target's device."""
    if num_classes < 2:
        raise ConfigError(f"random_logit needs a model with at least 2 classes; got num_classes={num_classes}")
    out = []
    for t, i in zip(target.tolist(), ids):
        g = generator(seed, i, "cpu", OTHER_CLASS_STREAM)
        k = int(torch.randint(0, num_classes - 1, (1,), generator=g))
        out.append(k + (k >= t))  # skip the target: uniform over the others
    return torch.tensor(out, dtype=torch.long, device=target.device)


@register(higher_is_better=False, context=("explain", "seed", "num_classes"))
def random_logit(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                 batch: Batch | None = None, explain: Explain | None = None,
                 similarity: Similarity = "ssim", absolute: bool = False, topk: Fraction = 0.1,
                 num_classes: Count | None = None, seed: int | None = None) -> dict[str, Tensor]:
    """Random Logit (Sixt et al. 2020): explain a class drawn uniformly at random from
    the classes other than the target, and compare that map with the target's map;
    lower similarity means the map depends more on the class.

    Args:
        explain: ``explain(x, target) -> [B,H,W]``, the evaluated method.
        similarity: ``ssim`` (the paper; mean SSIM of the min-max normalised maps, 7 x 7
            window) | ``spearman`` (rank correlation) | ``topk_iou`` (IoU of the top
            ``topk`` pixels). Degenerate maps follow ``metrics._similarity``.
        absolute: compare |maps|.
        num_classes: size of the label space; None: filled by the runner from the
            model's classes, or read from one forward when called directly.
        seed: the other class of sample ``i`` comes from ``generator(seed, index[i])``:
            the same in every batch. Null for the run seed.
    Returns:
        ``random_logit`` [B] the similarity; ``random_logit_class`` [B] the class drawn
        (as float). NaN where either map is not finite. Costs one explanation per
        sample (and one forward when ``num_classes`` is None).
    """
    explain = need_explain(explain, "random_logit")
    check_choice("similarity", similarity, SIMILARITIES)
    h, ok = clean(heatmap)
    if num_classes is None:
        num_classes = predictions(model, x[:1]).shape[1]
    other = other_classes(target, num_classes, seed, sample_ids(batch, h.shape[0]))
    ho = explain(x, other).detach().float()
    good = finite_rows(ho) & ok
    ho = torch.where(good[:, None, None], ho, torch.zeros((), device=ho.device))
    score = compare(ho, h, topk=topk, absolute=absolute, with_ssim=similarity == "ssim")[similarity]
    return {"random_logit": nan_where(score, good), "random_logit_class": other.float()}
