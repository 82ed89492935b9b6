"""Oracle: the ground-truth mask of the explained class as the map, the reference a
metric should rank first where the truth is known (the known-truth track, docs/truth.md;
the metric report card, docs/metrics.md)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._oracle import truth_map
from faithbench.types import Batch


@register(context=("truth",), cost="free")
def oracle(model: nn.Module | None, x: Tensor, target: Tensor, truth: Batch | None = None) -> Tensor:
    """1 on the sample's ground-truth masks of class ``target``, 0 elsewhere; it ignores
    the model. On ``cues`` that is the cue the model is verified to use (the used cue
    carries the class, the other cue a negative label). Not an explanation: a reference
    the report keeps apart from the methods, with the controls.

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
        >>> oracle(None, b.images, torch.tensor([2]), truth=b).nonzero().tolist()
        [[0, 1, 2]]
    """
    return truth_map(x, target, truth, "target", "oracle")
