"""``voc2007``: PASCAL VOC 2007 (Everingham et al., IJCV 2010) in torchvision's
``VOCDetection`` layout, multi-label, with per-object boxes and "difficult" flags.

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or
``VOC2007``)::

    VOCdevkit/VOC2007/JPEGImages/000001.jpg
    VOCdevkit/VOC2007/Annotations/000001.xml
    VOCdevkit/VOC2007/ImageSets/Main/test.txt

Labels: float multi-hot [20] over every annotated object (difficult ones included, as in
TorchRay's pointing game). Boxes: VOC's 1-based inclusive pixel indices become pixel-edge
xyxy ``[xmin-1, ymin-1, xmax, ymax]``. ``difficult_file``: the pointing-game difficult
subset flags (see ``_hard_flags``) -> ``Sample.hard_classes``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from faithbench.datasets import register
from faithbench.datasets._common import log, make_sample, read_rgb, require_root
from faithbench.datasets._hard_flags import hard_classes, read_flags
from faithbench.errors import ConfigError
from faithbench.labels import VOC_CLASSES
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

LAYOUT = "a VOC tree: VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}"


def find_year_dir(root: Path, year: str = "2007") -> Path:
    """The ``VOC<year>`` folder under any of the accepted roots."""
    for cand in (root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}", root):
        if (cand / "Annotations").is_dir() and (cand / "JPEGImages").is_dir():
            return cand
    raise ConfigError(f"voc2007: no VOC{year}/Annotations and JPEGImages under "
                      f"{str(root)!r}; expected {LAYOUT}")


def parse_voc_xml(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes [N,4] xyxy (pixel edges), labels [N] int64, difficult [N] bool of one
    annotation file; raises ValueError/ET.ParseError/KeyError on a broken file."""
    root = ET.parse(path).getroot()
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"unknown class {name!r}")
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError("object without bndbox")
        x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise ValueError(f"inverted box {x0, y0, x1, y1}")
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        labels.append(VOC_CLASSES.index(name))
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    if not boxes:
        raise ValueError("no objects")
    return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels),
            torch.tensor(difficult))


class VOCDataset(BenchDataset):
    label_space = "voc"
    class_names = VOC_CLASSES
    multilabel = True
    ground_truth = frozenset({"boxes"})

    def __init__(self, preprocess: Preprocess, base: Path, ids: list[str],
                 flags: dict[str, torch.Tensor] | None) -> None:
        self.pre, self.base, self.ids, self.flags = preprocess, base, ids, flags

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample | None:
        name = self.ids[i]
        xml = self.base / "Annotations" / f"{name}.xml"
        try:
            boxes, labels, difficult = parse_voc_xml(xml)
        except (OSError, ET.ParseError, ValueError, TypeError) as e:
            log.warning("skipping %s: broken annotation: %s", xml, e)
            return None
        img = read_rgb(self.base / "JPEGImages" / f"{name}.jpg")
        if img is None:
            return None
        target = torch.zeros(len(VOC_CLASSES))
        target[labels] = 1.0
        return make_sample(self.pre, img, target, f"voc2007/{name}", boxes=boxes,
                           box_labels=labels, box_difficult=difficult,
                           hard_classes=hard_classes(self.flags, name, labels.unique()))


@register(needs_root=True, label_space="voc")
def voc2007(preprocess: Preprocess, root: str | None = None, image_set: str = "test",
            difficult_file: str | None = None) -> BenchDataset:
    """Build PASCAL VOC 2007.

    Args:
        root: folder holding ``VOCdevkit`` (or ``VOCdevkit`` / ``VOC2007`` itself).
        image_set: a list in ``ImageSets/Main`` (``test``, ``val``, ``trainval``...).
        difficult_file: optional pointing-game difficult flags (TorchRay's
            ``pointing_game_ebp_voc07_difficult.txt`` format).
    """
    base = find_year_dir(require_root(root, "voc2007", LAYOUT))
    split = base / "ImageSets" / "Main" / f"{image_set}.txt"
    if not split.is_file():
        have = sorted(p.stem for p in (base / "ImageSets" / "Main").glob("*.txt")
                      if "_" not in p.stem)
        raise ConfigError(f"voc2007: image_set {image_set!r} not found ({split}); "
                          f"valid choices: {', '.join(have) or 'none'}")
    ids = [ln.split()[0] for ln in split.read_text().splitlines() if ln.strip()]
    flags = read_flags(difficult_file, len(VOC_CLASSES)) if difficult_file else None
    return VOCDataset(preprocess, base, ids, flags)
