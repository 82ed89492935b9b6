"""Label spaces: the classes a model predicts and a dataset is labelled in, by index.

A label space is a name (``imagenet``, ``voc``, ``coco``, ``shapes``,
``cues:rule=<rule>``) and the class names in model output order. Models and datasets
take their class lists from here, so the two sides cannot drift; a pair is compatible
when its names and its class orders agree (:func:`class_order_problem`).

Example:
    >>> class_names("shapes")
    ['circle', 'square', 'triangle', 'star', 'cross']
    >>> cue_space("marker"), CUE_CLASSES["marker"][-1]
    ('cues:rule=marker', 'none')
    >>> class_order_problem(["a", "b"], ["b", "a"])
    "class 0 is 'a' for the model but 'b' in the dataset"
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from faithbench.errors import unknown_choice

# PASCAL VOC 2007 (20 classes, the devkit's alphabetical order).
VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor"]

# COCO 2014 (80 classes, contiguous order of increasing category id).
COCO_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]

# The synthetic tracks: the class-defining shapes, and the marker colours of the cue track.
SHAPES_CLASSES = ("circle", "square", "triangle", "star", "cross")
MARKER_CLASSES = ("red", "green", "blue", "yellow")
NONE = "none"  # the class of a cue scene whose cue was removed (cue models are trained with it)
CUE_CLASSES: dict[str, tuple[str, ...]] = {"shape": (*SHAPES_CLASSES, NONE),
                                           "marker": (*MARKER_CLASSES, NONE)}


def cue_space(rule: str) -> str:
    """The label space of the cue track's models trained on ``rule``: ``cues:rule=<rule>``."""
    return f"cues:rule={rule}"


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synset ids (``n01440764``, ...) in model output order (sorted
    synsets, the ILSVRC2012 devkit order every torchvision/timm head uses), read offline
    from timm's bundled class info."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    syn = tuple(info.index_to_label_name(i) for i in range(1000))
    if list(syn) != sorted(syn):
        raise RuntimeError("timm's ImageNet synsets are not in sorted order")
    return syn


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """Short readable ImageNet names (first lemma of each synset: ``tabby``, ``tiger cat``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


@lru_cache(maxsize=1)
def synset_to_index() -> dict[str, int]:
    """ImageNet synset id -> model output index."""
    return {s: i for i, s in enumerate(imagenet_synsets())}


def class_names(space: str) -> list[str]:
    """The class names of the known label space ``space``, in model output order."""
    fixed = {"voc": VOC_CLASSES, "coco": COCO_CLASSES, "shapes": SHAPES_CLASSES,
             **{cue_space(rule): names for rule, names in CUE_CLASSES.items()}}
    if space == "imagenet":
        return imagenet_class_names()
    if space not in fixed:
        raise unknown_choice("label space", space, ["imagenet", *fixed])
    return list(fixed[space])


def class_order_problem(model: Sequence[str], dataset: Sequence[str]) -> str | None:
    """What differs between a model's and a dataset's class lists (count, or the first
    index whose names differ), or None when they agree; an empty list is unknown and
    agrees with anything."""
    if not model or not dataset:
        return None
    if len(model) != len(dataset):
        return f"the model has {len(model)} classes but the dataset {len(dataset)}"
    for i, (a, b) in enumerate(zip(model, dataset)):
        if a != b:
            return f"class {i} is {a!r} for the model but {b!r} in the dataset"
    return None
