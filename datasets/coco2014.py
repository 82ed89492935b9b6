"""``coco2014``: MS COCO 2014 (Lin et al., ECCV 2014) with instance annotations,
multi-label, with per-class masks (union of the class's instances) and boxes.

Layout::

    root/val2014/COCO_val2014_000000000042.jpg
    root/annotations/instances_val2014.json

Class ids are COCO's 80 category ids in increasing order mapped to 0..79 (the usual
contiguous order). Images without any annotation are left out (nothing to explain).
Masks come from pycocotools when installed, else from ``_coco_masks``' decoder. They are
kept twice: at the model's input size (``masks``, for metrics in input pixels) and at the
original size (``orig_masks``), where TorchRay's pointing game scores them: at 224 px a
mask 1-7 px wide can vanish and a point near a boundary can change hit/miss.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from faithbench.datasets import register
from faithbench.datasets._coco_masks import ann_mask
from faithbench.datasets._common import log, make_sample, read_rgb, require_root
from faithbench.datasets._hard_flags import hard_classes, read_flags
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

LAYOUT = "a COCO tree: val2014/*.jpg and annotations/instances_val2014.json"


class COCODataset(BenchDataset):
    label_space = "coco"
    multilabel = True
    ground_truth = frozenset({"boxes", "masks"})

    def __init__(self, preprocess: Preprocess, image_dir: Path, data: dict[str, Any],
                 flags: dict[str, torch.Tensor] | None) -> None:
        self.pre, self.image_dir, self.flags = preprocess, image_dir, flags
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.class_names = [c["name"] for c in cats]
        self.cat_index = {c["id"]: i for i, c in enumerate(cats)}
        self.anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in data["annotations"]:
            self.anns[a.get("image_id")].append(a)
        self.images = [im for im in data["images"] if im["id"] in self.anns]

    def __len__(self) -> int:
        return len(self.images)

    def _targets(self, im: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        h, w = int(im["height"]), int(im["width"])
        boxes, labels, masks = [], [], {}
        for a in self.anns[im["id"]]:
            c = self.cat_index[a["category_id"]]  # KeyError: unknown category
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if bw < 0 or bh < 0:
                raise ValueError(f"negative box size in annotation {a.get('id')}")
            boxes.append([x, y, x + bw, y + bh])
            labels.append(c)
            m = ann_mask(a["segmentation"], h, w)
            masks[c] = masks[c] | m if c in masks else m
        order = sorted(masks)
        return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels),
                torch.stack([masks[c] for c in order]), torch.tensor(order))

    def __getitem__(self, i: int) -> Sample | None:
        im = self.images[i]
        try:
            boxes, labels, masks, mask_labels = self._targets(im)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            log.warning("skipping %s: broken annotation: %r", im.get("file_name"), e)
            return None
        img = read_rgb(self.image_dir / im["file_name"])
        if img is None:
            return None
        if tuple(img.shape[-2:]) != tuple(masks.shape[-2:]):
            log.warning("skipping %s: image is %s, annotation says %s", im["file_name"],
                        tuple(img.shape[-2:]), tuple(masks.shape[-2:]))
            return None
        target = torch.zeros(len(self.class_names))
        target[labels] = 1.0
        name = Path(im["file_name"]).stem
        return make_sample(self.pre, img, target, f"coco2014/{name}", boxes=boxes,
                           box_labels=labels, masks=masks, mask_labels=mask_labels,
                           hard_classes=hard_classes(self.flags, name, mask_labels),
                           keep_orig_masks=True)  # the pointing game scores at this size


@register(needs_root=True, label_space="coco")
def coco2014(preprocess: Preprocess, root: str | None = None, split: str = "val2014",
             annotations: str | None = None, difficult_file: str | None = None
             ) -> BenchDataset:
    """Build COCO 2014.

    Args:
        root: folder holding ``<split>/`` and ``annotations/``.
        split: image folder and annotation suffix (``val2014``).
        annotations: the instances JSON; ``root/annotations/instances_<split>.json``
            by default.
        difficult_file: optional pointing-game difficult flags (TorchRay's
            ``pointing_game_ebp_coco_difficult.txt`` format, 80 flags per image).
    """
    base = require_root(root, "coco2014", LAYOUT)
    ann = Path(annotations).expanduser() if annotations else (
        base / "annotations" / f"instances_{split}.json")
    image_dir = base / split
    if not ann.is_file() or not image_dir.is_dir():
        raise ConfigError(f"coco2014: need {image_dir} and {ann}; expected {LAYOUT}")
    try:
        data = json.loads(ann.read_text())
        ok = all(k in data for k in ("images", "annotations", "categories"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"coco2014: cannot read {ann}: {e}") from None
    if not ok:
        raise ConfigError(f"coco2014: {ann} lacks images/annotations/categories")
    ds = COCODataset(preprocess, image_dir, data, None)
    if difficult_file:
        ds.flags = read_flags(difficult_file, len(ds.class_names))
    return ds
