"""The VOC and COCO class lists, kept importable here; they live in ``faithbench.labels``."""

from faithbench.labels import COCO_CLASSES, VOC_CLASSES

__all__ = ["COCO_CLASSES", "VOC_CLASSES"]
