"""``imagenet``: ILSVRC2012 validation images (Russakovsky et al., IJCV 2015) with their
localisation boxes, in the index order of torchvision/timm ImageNet models.

Images: any ``*.JPEG``/``*.jpg``/``*.png`` under ``root/<images>`` (flat, or in synset
folders as torchvision's ``ImageNet`` layout). Boxes, in either common layout:

- per-image PASCAL-style XML (``ILSVRC2012_val_00000001.xml`` with ``<object><name>``
  synset and ``<bndbox>``), anywhere under ``root`` or in the folder ``boxes``;
- ``LOC_val_solution.csv`` (``ImageId,PredictionString`` = "synset x0 y0 x1 y1 ...").

Box coordinates (``box_convention="inclusive"``, default): inclusive pixel indices
counted from 0. The devkit's evaluation (``eval_clsloc.m`` / ``compute_overlap.m``)
measures a box as ``(xmax - xmin + 1) * (ymax - ymin + 1)`` pixels (inclusive), and the
data fix the base: of the 80,477 validation boxes (wsolevaluation's copy), 7,388 have
``xmin = 0`` and 6,086 ``xmax = W - 1``, none ``xmax = W``. They become pixel-edge xyxy
``[xmin, ymin, xmax + 1, ymax + 1]``, clipped to the image. ``"edges"``: used as given
(the reading before; the last column and row of every box are left out). Label: the synset folder if the image sits in one, else the synset of its boxes.
An image with neither is left out (warning).
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import torch

from faithbench.datasets import register
from faithbench.datasets._common import log, make_sample, read_rgb, require_root
from faithbench.errors import ConfigError
from faithbench.labels import imagenet_class_names, synset_to_index
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

LAYOUT = ("ILSVRC2012 val images (flat or in synset folders) with per-image XML boxes "
          "or LOC_val_solution.csv")
IMAGE_EXT = {".jpeg", ".jpg", ".png"}
Boxes = list[tuple[str, list[float]]]  # (synset, xyxy) per object
BoxConvention = Literal["inclusive", "edges"]


def parse_xml(path: Path) -> Boxes:
    objs = []
    for obj in ET.parse(path).getroot().iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError("object without bndbox")
        objs.append((obj.findtext("name", "").strip(),
                     [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]))
    return objs


def read_solution_csv(path: Path) -> dict[str, str]:
    """ImageId -> raw PredictionString (parsed per sample, so one bad row skips one image)."""
    with open(path, newline="") as f:
        return {row["ImageId"]: row["PredictionString"] for row in csv.DictReader(f)}


def parse_prediction_string(s: str) -> Boxes:
    parts = s.split()
    if not parts or len(parts) % 5:
        raise ValueError(f"expected groups of 'synset x0 y0 x1 y1', got {s!r}")
    return [(parts[i], [float(v) for v in parts[i + 1 : i + 5]])
            for i in range(0, len(parts), 5)]


class ImageNetDataset(BenchDataset):
    label_space = "imagenet"
    multilabel = False
    ground_truth = frozenset({"boxes"})

    def __init__(self, preprocess: Preprocess, items: list[tuple[str, Path, str | None]],
                 xml: dict[str, Path], csv_rows: dict[str, str],
                 box_convention: BoxConvention = "inclusive") -> None:
        self.pre, self.items, self.xml, self.csv_rows = preprocess, items, xml, csv_rows
        self.box_convention = box_convention
        self.class_names = imagenet_class_names()
        self.index = synset_to_index()

    def __len__(self) -> int:
        return len(self.items)

    def _boxes(self, stem: str) -> Boxes:
        if stem in self.xml:
            return parse_xml(self.xml[stem])
        if stem in self.csv_rows:
            return parse_prediction_string(self.csv_rows[stem])
        return []

    def __getitem__(self, i: int) -> Sample | None:
        stem, path, folder_synset = self.items[i]
        try:
            objs = self._boxes(stem)
            labels = torch.tensor([self.index[s] for s, _ in objs], dtype=torch.int64)
            boxes = torch.tensor([b for _, b in objs], dtype=torch.float32).reshape(-1, 4)
            if (boxes[:, 2:] < boxes[:, :2]).any():
                raise ValueError("inverted box")
            if self.box_convention == "inclusive":  # 0-based inclusive indices -> pixel edges
                boxes[:, 2:] += 1
            synset = folder_synset or (objs[0][0] if objs else None)
            if synset is None:
                raise ValueError("no label: no synset folder and no boxes")
            label = torch.tensor(self.index[synset])
        except (OSError, ET.ParseError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping %s: broken annotation: %r", path, e)
            return None
        img = read_rgb(path)
        if img is None:
            return None
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, img.shape[2])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, img.shape[1])
        return make_sample(self.pre, img, label, f"imagenet/{stem}", boxes=boxes,
                           box_labels=labels)


@register(needs_root=True, label_space="imagenet")
def imagenet(preprocess: Preprocess, root: str | None = None, images: str = "",
             boxes: str | None = None, box_convention: BoxConvention = "inclusive") -> BenchDataset:
    """Build the ILSVRC2012 validation set.

    Args:
        root: the dataset folder.
        images: sub-folder of ``root`` holding the images ("" = search all of root).
        boxes: an XML folder or ``LOC_val_solution.csv`` (relative to root or absolute);
            by default XML files found under root, else ``root/LOC_val_solution.csv``.
        box_convention: ``inclusive`` (0-based inclusive pixel indices, made pixel
            edges ``[xmin, ymin, xmax+1, ymax+1]``) | ``edges`` (used as given).
    """
    base = require_root(root, "imagenet", LAYOUT)
    index = synset_to_index()
    files = sorted(p for p in (base / images).rglob("*") if p.suffix.lower() in IMAGE_EXT)
    items = [(p.stem, p, p.parent.name if p.parent.name in index else None) for p in files]
    ann = Path(boxes).expanduser() if boxes else None
    if ann is not None and not ann.is_absolute():
        ann = base / ann
    if ann is not None and not ann.exists():
        raise ConfigError(f"imagenet: boxes {str(ann)!r} does not exist")
    xml: dict[str, Path] = {}
    rows: dict[str, str] = {}
    if ann is not None and ann.is_file():
        rows = read_solution_csv(ann)
    else:
        xml = {p.stem: p for p in (ann or base).rglob("*.xml")}
        if not xml and ann is None and (base / "LOC_val_solution.csv").is_file():
            rows = read_solution_csv(base / "LOC_val_solution.csv")
    unlabelled = [s for s, _, f in items if f is None and s not in xml and s not in rows]
    if unlabelled:
        log.warning("imagenet: leaving out %d images with neither a synset folder nor "
                    "boxes (first: %s)", len(unlabelled), unlabelled[0])
        drop = set(unlabelled)
        items = [it for it in items if it[0] not in drop]
    if not items:
        raise ConfigError(f"imagenet: no labelled images under {str(base)!r}; expected {LAYOUT}")
    return ImageNetDataset(preprocess, items, xml, rows, box_convention)
