"""The ground-truth masks of a batch as maps: the reference ("oracle") maps of the
metric report card (``faithbench.report.card``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from faithbench.errors import ConfigError
from faithbench.methods._common import check_inputs
from faithbench.types import Batch


def truth_map(x: Tensor, target: Tensor, truth: Batch | None, which: Literal["target", "other"],
              name: str) -> Tensor:
    """Per sample, the union of its ground-truth masks of class ``target`` (``which =
    "target"``) or of every other mask (``"other"``), as a 0/1 map.

    Args:
        x: images [B,3,H,W], or [k*B,3,H,W] for ``k`` copies of the batch one after the
            other (as metrics that explain perturbed copies pass them).
        target: [B] or [k*B] class per row.
        truth: the batch explained (the runner passes it); its ``masks`` [M,H,W] and
            ``mask_labels`` [M] per sample.
    Returns:
        [B,H,W] float32 on ``x.device``.
    Raises:
        ConfigError: no ground truth given, or the dataset has no masks.
    """
    target = check_inputs(x, target)
    if truth is None:
        raise ConfigError(f"method {name!r} draws the ground truth: it runs only through the "
                          "runner, which passes the batch (truth=...)")
    if truth.masks is None or truth.mask_labels is None:
        raise ConfigError(f"method {name!r} needs a dataset with masks; this one has none. "
                          "Valid choices: datasets with masks (cues, shapes, coco2014, coco_json)")
    b = len(truth.masks)
    if x.shape[0] % b:
        raise ConfigError(f"method {name!r}: {x.shape[0]} images for a batch of {b} samples")
    h, w = x.shape[-2:]
    out = torch.zeros(b * (x.shape[0] // b), h, w, device=x.device)
    for r in range(out.shape[0]):  # masks are ragged per sample: one cheap pass, no forwards
        m, lab = truth.masks[r % b], truth.mask_labels[r % b]
        if m.shape[-2:] != (h, w):
            raise ConfigError(f"method {name!r}: masks of {tuple(m.shape[-2:])} for images of {(h, w)}")
        keep = lab.to(target.device) == target[r]
        keep = keep if which == "target" else ~keep
        if keep.any():
            out[r] = (m.to(x.device)[keep.to(x.device)] > 0).any(0).float()
    return out
