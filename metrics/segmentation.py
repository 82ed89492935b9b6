"""Weakly supervised segmentation from a map (Grad-CAM, Selvaraju et al., ICCV 2017,
uses Grad-CAM maps as the seeds of a segmenter): the thresholded map against the
target class's mask, scored by IoU. The threshold rules are ``box_localisation``'s
(``faithbench.metrics.localisation``): ``max`` keeps ``map > t * max(map)``, ``minmax``
keeps the pixels above ``t`` of the min-max normalised map."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import nan_where, need_batch
from faithbench.metrics.inside import regions
from faithbench.metrics.localisation import ThresholdRule, kept, scaled_maps
from faithbench.params import UnitInterval
from faithbench.types import Batch


@register(higher_is_better=True, needs={"masks"})
def segmentation_iou(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                     batch: Batch, threshold: UnitInterval = 0.15,
                     threshold_rule: ThresholdRule = "max") -> dict[str, Tensor]:
    """IoU of the thresholded map with the union of the target class's masks:
    ``|S & G| / |S | G|`` with ``S`` the pixels kept at ``threshold`` under
    ``threshold_rule`` (strictly above, as ``box_localisation``) and ``G`` the mask.

    Args:
        heatmap: [B,H,W]; target: [B] int64; batch: masks in input pixels. The model is
            not used.
        threshold: share of the max (``max``, Grad-CAM's 15 % by default) or of the
            min-max range (``minmax``).
        threshold_rule: ``max`` | ``minmax``. Under ``max`` a map with max <= 0 keeps
            nothing (IoU 0) and a constant positive map keeps everything (IoU = the
            mask's area fraction); under ``minmax`` a constant map keeps nothing.
    Returns:
        ``segmentation_iou`` [B] in [0,1]; ``segmentation_iou_kept`` [B] the share of
        pixels kept. NaN where the class has no mask. No forward passes.

    Example:
        >>> from faithbench.types import Batch
        >>> m = torch.zeros(1, 2, 4, dtype=torch.bool); m[0, :, :2] = True
        >>> b = Batch(images=torch.zeros(1, 3, 2, 4), labels=torch.zeros(1, dtype=torch.long),
        ...           ids=["a"], index=torch.arange(1), masks=[m], mask_labels=[torch.tensor([0])])
        >>> h = torch.tensor([[[1.0, 0.1, 0.9, 0.0], [1.0, 0.0, 0.0, 0.0]]])
        >>> segmentation_iou(None, b.images, h, torch.tensor([0]), b)["segmentation_iou"]
        tensor([0.4000])
    """
    batch = need_batch(batch, "segmentation_iou")
    s, ok = scaled_maps(heatmap, threshold_rule)
    dev = heatmap.device
    keep = torch.from_numpy(kept(s, threshold)).to(dev)
    gt, has = regions(batch, target, tuple(heatmap.shape[-2:]), "masks", dev)
    inter = (keep & gt).flatten(1).sum(1).double()
    union = (keep | gt).flatten(1).sum(1).double()
    iou = inter / union.clamp(min=1)
    share = keep.flatten(1).double().mean(1)
    return {"segmentation_iou": nan_where(iou, ok & has),
            "segmentation_iou_kept": nan_where(share, ok)}
