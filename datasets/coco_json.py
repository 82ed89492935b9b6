"""``coco_json``: your own images with COCO-format annotations (an images folder and one
JSON file with the standard ``images``, ``annotations`` and ``categories`` arrays).

Each annotation has a ``bbox`` ([x, y, w, h] in pixels) and/or a ``segmentation``
(polygons, or RLE with list or compressed counts; ``_coco_masks``). An annotation
without ``bbox`` is boxed by its mask's tight box. The dataset's categories are mapped
to the model's class indices (``_category_map``: an explicit ``category_map`` first,
then by normalised name); several categories may map to one class. Per image, boxes
keep one row per annotation; masks are the union of each class's instances. Masks are
ground truth only when every kept annotation has a segmentation. Crowd annotations
(``iscrowd: 1``, COCO's regions of many instances) count as ground truth of their class
like any other (``crowd="include"``, as the ``coco2014`` reader and TorchRay's COCO
pointing game do) or are ignored (``"drop"``). Images left without an annotation are
left out (nothing to explain), with one log line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from faithbench.datasets import register
from faithbench.datasets._category_map import map_categories
from faithbench.datasets._coco_masks import ann_mask
from faithbench.datasets._common import log, make_sample, read_rgb, require_root
from faithbench.datasets.shapes import mask_box
from faithbench.errors import ConfigError
from faithbench.labels import class_names as space_classes
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

LabelFrom = Literal["largest", "first"]
Unmatched = Literal["error", "drop"]
Crowd = Literal["include", "drop"]
LAYOUT = "an images folder (dataset.root) and a COCO-format JSON file (dataset.annotations)"


def area(a: dict[str, Any]) -> float:
    """An annotation's size for ``label_from="largest"``: COCO's ``area`` (the segment's
    pixel count in COCO files), else its box's w * h."""
    if "area" in a:
        return float(a["area"])
    return float(a["bbox"][2]) * float(a["bbox"][3]) if "bbox" in a else 0.0


class COCOJSONDataset(BenchDataset):
    """Images of one COCO-format file; ``anns[image_id]`` holds the kept annotations,
    each with its model class under ``"_class"``."""

    def __init__(self, preprocess: Preprocess, image_dir: Path, images: list[dict[str, Any]],
                 anns: dict[int, list[dict[str, Any]]], class_names: list[str], label_space: str,
                 multilabel: bool, num_classes: int, label_from: str, masks: bool) -> None:
        self.pre, self.image_dir, self.images, self.anns = preprocess, image_dir, images, anns
        self.class_names, self.label_space, self.multilabel = class_names, label_space, multilabel
        self.num_classes, self.label_from = num_classes, label_from
        self.ground_truth = frozenset({"boxes", "masks"} if masks else {"boxes"})

    def __len__(self) -> int:
        return len(self.images)

    def label(self, anns: list[dict[str, Any]]) -> Tensor:
        """Multi-hot [K] float32 of every class present, or the class [] int64 of the
        largest (ties: the first) or the first annotation in file order."""
        if self.multilabel:
            target = torch.zeros(self.num_classes)
            target[[a["_class"] for a in anns]] = 1.0
            return target
        pick = anns[0] if self.label_from == "first" else max(anns, key=area)
        return torch.tensor(pick["_class"])

    def targets(self, anns: list[dict[str, Any]], h: int, w: int
                ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Boxes [N,4] xyxy and their classes [N] in original pixels; with masks, the
        union per class [M,h,w] bool and the classes [M] (increasing)."""
        use_masks = "masks" in self.ground_truth
        boxes, labels, masks = [], [], {}
        for a in anns:
            need = "segmentation" in a and (use_masks or "bbox" not in a)
            m = ann_mask(a["segmentation"], h, w) if need else None
            if m is not None and tuple(m.shape) != (h, w):
                raise ValueError(f"annotation {a.get('id')}: mask is {tuple(m.shape)}, image {(h, w)}")
            if "bbox" in a:
                x, y, bw, bh = (float(v) for v in a["bbox"])
                boxes.append([x, y, x + bw, y + bh])
            elif m is not None and bool(m.any()):
                boxes.append(mask_box(m).tolist())  # the mask's tight box
            else:
                raise ValueError(f"annotation {a.get('id')}: no bbox and an empty segmentation")
            labels.append(a["_class"])
            if use_masks and m is not None:
                c = a["_class"]
                masks[c] = masks[c] | m if c in masks else m
        order = sorted(masks)
        return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels),
                torch.stack([masks[c] for c in order]) if masks else None,
                torch.tensor(order) if masks else None)

    def __getitem__(self, i: int) -> Sample | None:
        im = self.images[i]
        img = read_rgb(self.image_dir / im["file_name"])
        if img is None:
            return None
        h, w = img.shape[-2:]
        if (im.get("height"), im.get("width")) not in ((None, None), (h, w)):
            log.warning("skipping %s: image is %s, annotation says %s", im["file_name"],
                        (h, w), (im.get("height"), im.get("width")))
            return None
        anns = self.anns[im["id"]]
        try:
            boxes, labels, masks, mask_labels = self.targets(anns, h, w)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            log.warning("skipping %s: broken annotation: %r", im["file_name"], e)
            return None
        sid = f"coco_json/{Path(im['file_name']).with_suffix('').as_posix()}"
        return make_sample(self.pre, img, self.label(anns), sid, boxes=boxes, box_labels=labels,
                           masks=masks, mask_labels=mask_labels, keep_orig_masks=masks is not None)


def read_annotations(path: Path) -> dict[str, Any]:
    """The JSON file, checked for the three COCO arrays."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"coco_json: cannot read annotations {str(path)!r}: {e}") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        raise ConfigError(f"coco_json: {str(path)!r} needs the arrays {', '.join(keys)}")
    return data


def check_annotation(a: dict[str, Any], cats: set[int], images: set[int]) -> None:
    """Refuse an annotation the reader cannot use, naming it."""
    what = f"coco_json: annotation {a.get('id')!r}"
    if a.get("category_id") not in cats:
        raise ConfigError(f"{what} has category_id {a.get('category_id')!r}, not in categories")
    if a.get("image_id") not in images:
        raise ConfigError(f"{what} has image_id {a.get('image_id')!r}, not in images")
    if "bbox" not in a and "segmentation" not in a:
        raise ConfigError(f"{what} has neither bbox nor segmentation")
    box = a.get("bbox", [0, 0, 0, 0])
    if len(box) != 4 or float(box[2]) < 0 or float(box[3]) < 0:
        raise ConfigError(f"{what}: bbox {box!r} is not [x, y, w, h] with w, h >= 0")


@register(needs_root=True)
def coco_json(preprocess: Preprocess, root: str | None = None, annotations: str | None = None,
              label_space: str = "imagenet", classes: list[str] | None = None,
              category_map: dict[Any, Any] | None = None, unmatched: Unmatched = "error",
              label_from: LabelFrom = "largest", multilabel: bool = False,
              crowd: Crowd = "include") -> BenchDataset:
    """Build a dataset from an images folder and a COCO-format annotations file.

    Args:
        root: the folder that ``file_name`` of each image record is relative to.
        annotations: the COCO-format JSON file.
        label_space: the model's label space (``imagenet``, ``voc``, ``coco``,
            ``shapes``, ...; must match the model's); its class names are matched to
            the categories unless ``classes`` is given.
        classes: the model's class names in output order (a model outside the known
            label spaces); categories are matched to these.
        category_map: {category id or name: model class index or name, or null to
            drop it}; categories not in it are matched by name.
        unmatched: ``error`` (a category with no model class stops the build, listing
            them) | ``drop`` (its annotations are ignored, with a warning).
        label_from: the single label of an image: the class of its ``largest``
            annotation (COCO ``area``, else box w*h; ties: the first) | its ``first``.
        multilabel: the label is instead a multi-hot vector over the model's classes.
        crowd: ``include`` crowd annotations (``iscrowd: 1``) as ground truth | ``drop``.
    """
    image_dir = require_root(root, "coco_json", LAYOUT)
    if not annotations:
        raise ConfigError(f"dataset 'coco_json' needs dataset.annotations=...; expected {LAYOUT}")
    ann_path = Path(annotations).expanduser()
    if not ann_path.is_file():
        raise ConfigError(f"coco_json: annotations file {str(ann_path)!r} does not exist")
    data = read_annotations(ann_path)
    names = [str(c) for c in classes] if classes is not None else known_classes(label_space)
    if multilabel and not names:
        raise ConfigError("coco_json: multilabel=true needs the model's class names: set "
                          "dataset.label_space to a known space or dataset.classes")
    source = "dataset.classes" if classes is not None else f"label_space {label_space!r}"
    to_class = map_categories(data["categories"], names, category_map, unmatched, "coco_json",
                              source)
    cats, image_ids = {c["id"] for c in data["categories"]}, {im["id"] for im in data["images"]}
    anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in data["annotations"]:
        check_annotation(a, cats, image_ids)
        if a["category_id"] in to_class and not (crowd == "drop" and a.get("iscrowd")):
            anns[a["image_id"]].append({**a, "_class": to_class[a["category_id"]]})
    images = [im for im in data["images"] if im["id"] in anns]
    if len(images) < len(data["images"]):
        log.info("coco_json: %d of %d images have no annotation to score and are left out",
                 len(data["images"]) - len(images), len(data["images"]))
    if not images:
        raise ConfigError(f"coco_json: no image of {str(ann_path)!r} has an annotation of a "
                          "mapped category")
    kept = [a for im in images for a in anns[im["id"]]]
    masks = all("segmentation" in a for a in kept)
    if not masks and any("segmentation" in a for a in kept):
        log.warning("coco_json: some annotations have no segmentation: masks are not used, "
                    "boxes are the ground truth")
    return COCOJSONDataset(preprocess, image_dir, images, anns, names or [], label_space,
                           multilabel, len(names or []), label_from, masks)


def known_classes(label_space: str) -> list[str] | None:
    """The class names of a known label space, None for any other (a custom model's)."""
    try:
        return space_classes(label_space)
    except ConfigError:
        return None
