"""Helpers shared by the readers: image decoding and the geometry of ground truth."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.types import Sample

log = logging.getLogger("faithbench.datasets")


def read_rgb(path: str | Path) -> Tensor | None:
    """Decode an image file to RGB float [3,h,w] in [0,1]; None (with one warning naming
    the file) when it is missing or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            w, h = im.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        log.warning("skipping unreadable image %s: %s", path, e)
        return None
    return arr.view(h, w, 3).permute(2, 0, 1).float() / 255


def make_sample(pre: Preprocess, img: Tensor, label: Tensor, sid: str,
                boxes: Tensor | None = None, box_labels: Tensor | None = None,
                box_difficult: Tensor | None = None, masks: Tensor | None = None,
                mask_labels: Tensor | None = None, hard_classes: Tensor | None = None,
                keep_orig_masks: bool = False) -> Sample:
    """Apply ``pre`` to a raw RGB image [3,h,w] and its ground truth in original pixels
    (boxes [N,4] xyxy, masks [M,h,w]); boxes that fall outside a crop are dropped along
    with their labels and difficult flags. ``keep_orig_masks``: also keep ``masks`` as
    given, at the original size (``Sample.orig_masks``)."""
    h, w = img.shape[-2:]
    g = pre.geometry(h, w)
    if g.resized == (h, w) and g.size == (h, w):
        x = pre.normalize(img.float().clamp(0, 1))  # same size: skip a no-op resample
    else:
        x = pre.image(img, g)
    s = Sample(image=x, label=label, id=sid, orig_size=(h, w), scale=g.scale,
               offset=g.offset, hard_classes=hard_classes)
    if boxes is not None:
        b, keep = pre.boxes(boxes.reshape(-1, 4), g)
        s.boxes = b[keep]
        s.box_labels = None if box_labels is None else box_labels[keep]
        s.box_difficult = None if box_difficult is None else box_difficult[keep]
    if masks is not None:
        s.masks = pre.masks(masks, g)
        s.mask_labels = mask_labels
        s.orig_masks = masks.bool() if keep_orig_masks else None
    return s


def require_root(root: str | Path | None, dataset: str, expect: str) -> Path:
    """The dataset root as a Path, or a ConfigError saying what layout is expected."""
    if root is None or str(root) in ("", "None", "???"):
        raise ConfigError(f"dataset {dataset!r} needs dataset.root=... pointing at {expect}")
    p = Path(root).expanduser()
    if not p.exists():
        raise ConfigError(f"dataset {dataset!r}: root {str(p)!r} does not exist; "
                          f"expected {expect}")
    return p
