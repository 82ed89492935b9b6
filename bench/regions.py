"""Ground-truth regions of one (sample, class): the union of the class's masks or boxes,
in the input frame or its footprint in original pixels. The one way to get them, for the
pointing games, the known-truth metrics and ``Batch.regions``."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.errors import ConfigError, check_choice
from faithbench.types import Batch, boxes_to_mask

MaskResolution = Literal["original", "input"]


def frame(batch: Batch, i: int, hw: tuple[int, int]) -> tuple[tuple[float, float], tuple[int, int]]:
    """(scale (y, x), size of the input's footprint in original pixels)."""
    if batch.scale.shape[0] > i:
        sy, sx = (float(v) for v in batch.scale[i])
    else:
        sy, sx = 1.0, 1.0
    return (sy, sx), (max(1, round(hw[0] * sy)), max(1, round(hw[1] * sx)))


def _footprint(m: Tensor, batch: Batch, i: int, size: tuple[int, int],
               scale: tuple[float, float]) -> Tensor:
    """The part of an original-size mask [h,w] under the input's footprint: ``size``
    pixels from ``offset * scale`` (0 without a crop), False where it runs past ``m``."""
    off = batch.offset[i].tolist() if batch.offset.shape[0] > i else [0.0, 0.0]
    top, left = round(off[0] * scale[0]), round(off[1] * scale[1])
    crop = m[top : top + size[0], left : left + size[1]]
    if tuple(crop.shape) == size:
        return crop
    out = torch.zeros(size, dtype=torch.bool)
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


def class_region(batch: Batch, i: int, t: int, size: tuple[int, int] | None = None,
                 scale: tuple[float, float] = (1.0, 1.0), ground_truth: str = "auto",
                 skip_difficult: bool = False,
                 mask_resolution: MaskResolution = "input") -> Tensor | None:
    """Union of class ``t``'s ground truth of sample ``i`` as a bool mask [h,w] of ``size``
    (default: the input size), the input frame stretched by ``scale`` (y, x). A negative
    ``t`` selects every negatively labelled mask (the cue track's unused cues, labelled
    ``-1 - value``). ``ground_truth``: "masks", "boxes", or "auto" (masks where the
    batch has them, else boxes). Masks: with
    ``mask_resolution="original"`` and ``batch.orig_masks`` (COCO), the union of the
    original-size masks under the footprint, pixel for pixel (TorchRay's
    ``coco_as_mask``); else the input-resolution masks upsampled nearest-neighbour, so
    each input pixel covers its footprint. Boxes are scaled exactly. None where the
    class has no ground truth, an empty mask union (not a free hit), or, with
    ``skip_difficult``, only VOC "difficult" boxes."""
    check_choice("ground_truth", ground_truth, ["auto", "masks", "boxes"])
    size = tuple(batch.images.shape[-2:]) if size is None else size
    check_choice("mask_resolution", mask_resolution, ["original", "input"])
    use_masks = ground_truth == "masks" or (ground_truth == "auto" and batch.masks is not None)
    if ground_truth != "auto" and getattr(batch, ground_truth) is None:
        have = [k for k in ("masks", "boxes") if getattr(batch, k) is not None]
        raise ConfigError(f"ground_truth={ground_truth!r} but the batch has no {ground_truth}; "
                          f"valid here: {', '.join(['auto', *have])}")
    if use_masks:
        if batch.masks is None or batch.mask_labels is None:
            return None
        labels = batch.mask_labels[i].cpu()
        sel = labels == t if t >= 0 else labels < 0
        if not bool(sel.any()):
            return None
        if mask_resolution == "original" and batch.orig_masks is not None:
            m = _footprint(batch.orig_masks[i].cpu()[sel].any(0), batch, i, size, scale)
            return m if bool(m.any()) else None
        m = batch.masks[i].cpu()[sel].any(0)
        if not bool(m.any()):
            return None
        return F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
    if batch.boxes is None or batch.box_labels is None:
        return None
    sel = batch.box_labels[i].cpu() == t
    if not bool(sel.any()):
        return None
    if skip_difficult and batch.box_difficult is not None and bool(batch.box_difficult[i].cpu()[sel].all()):
        return None
    b = batch.boxes[i][sel].float().cpu() * torch.tensor([scale[1], scale[0], scale[1], scale[0]])
    return boxes_to_mask(b, size)
