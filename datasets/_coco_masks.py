"""COCO segmentation -> bool masks: pycocotools when installed, else a pure
polygon / RLE decoder (scikit-image's polygon fill and the COCO RLE definitions)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def rle_counts(counts: str | list[int]) -> list[int]:
    """Run lengths of a COCO RLE: a list already, or the compressed string form (each
    count as 5-bit groups in chars offset by 48, continuation bit 0x20, sign bit 0x10;
    from the third count on, stored as the difference to the count two before)."""
    if isinstance(counts, list):
        return [int(c) for c in counts]
    out: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def decode_rle(rle: dict[str, Any]) -> Tensor:
    """RLE {"size": [h, w], "counts": ...} -> bool [h,w]. Runs alternate 0s and 1s
    (starting with 0s) over the pixels in column-major order."""
    h, w = rle["size"]
    counts = rle_counts(rle["counts"])
    if sum(counts) != h * w:
        raise ValueError(f"RLE covers {sum(counts)} pixels, the image {h * w}")
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return torch.from_numpy(flat.reshape(w, h).T.copy())


def decode_polygons(polys: list[list[float]], h: int, w: int) -> Tensor:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] -> bool [h,w] (union, pixel centres
    at integer + 0.5 as in COCO's coordinates)."""
    from skimage.draw import polygon

    m = np.zeros((h, w), dtype=bool)
    for poly in polys:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(xy) < 3:
            raise ValueError("polygon with fewer than 3 points")
        rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(h, w))
        m[rr, cc] = True
    return torch.from_numpy(m)


def ann_mask(seg: Any, h: int, w: int) -> Tensor:
    """One annotation's ``segmentation`` -> bool [h,w]."""
    try:
        from pycocotools import mask as cmask
    except ImportError:
        cmask = None
    if cmask is not None:
        if isinstance(seg, list):
            rle = cmask.merge(cmask.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):
            rle = cmask.frPyObjects(seg, h, w)
        else:
            rle = seg
        return torch.from_numpy(cmask.decode(rle).astype(bool))
    if isinstance(seg, list):
        return decode_polygons(seg, h, w)
    if isinstance(seg, dict) and "counts" in seg:
        return decode_rle(seg)
    raise ValueError(f"unknown segmentation format {type(seg).__name__}")
