"""The wrong oracle: the ground-truth masks of everything but the explained class (on
``cues``: the cue the model is verified not to use), a reference a metric should rank
below the oracle (docs/metrics.md, the metric report card)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._oracle import truth_map
from faithbench.types import Batch


@register(context=("truth",), cost="free")
def oracle_other(model: nn.Module | None, x: Tensor, target: Tensor,
                 truth: Batch | None = None) -> Tensor:
    """1 on the sample's ground-truth masks of any class but ``target``, 0 elsewhere
    (all 0 where there is none); it ignores the model.

    Args:
        model: unused.
        x: images [B,3,H,W] (shape and device only).
        target: [B] class per sample.
        truth: the batch explained, filled by the runner (masks and their labels).

    Returns:
        [B,H,W] float32, 0/1.

    Example:
        >>> import torch
        >>> from faithbench.types import Batch
        >>> m = torch.zeros(2, 4, 6, dtype=torch.bool); m[0, 1, 2] = m[1, 3, 5] = True
        >>> b = Batch(torch.zeros(1, 3, 4, 6), torch.tensor([2]), ["a"], torch.tensor([0]),
        ...           masks=[m], mask_labels=[torch.tensor([2, -3])])
        >>> oracle_other(None, b.images, torch.tensor([2]), truth=b).nonzero().tolist()
        [[0, 3, 5]]
    """
    return truth_map(x, target, truth, "other", "oracle_other")
