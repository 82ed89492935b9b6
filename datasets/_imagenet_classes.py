"""The ImageNet-1k label space, kept importable here; it lives in ``faithbench.labels``."""

from faithbench.labels import imagenet_class_names, imagenet_synsets, synset_to_index

__all__ = ["imagenet_class_names", "imagenet_synsets", "synset_to_index"]
