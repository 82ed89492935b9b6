"""The ImageNet-1k label space: synset ids and names in the index order of torchvision
and timm ImageNet models (sorted synsets, the ILSVRC2012 devkit order), read offline
from timm's bundled class info."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 synset ids (``n01440764``, ...) in model output order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    syn = tuple(info.index_to_label_name(i) for i in range(1000))
    if list(syn) != sorted(syn):  # the order every torchvision/timm ImageNet head uses
        raise RuntimeError("timm's ImageNet synsets are not in sorted order")
    return syn


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """Short readable names (first lemma of each synset: ``tabby``, ``tiger cat``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


@lru_cache(maxsize=1)
def synset_to_index() -> dict[str, int]:
    return {s: i for i, s in enumerate(imagenet_synsets())}
