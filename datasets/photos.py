"""``photos``: real photos shipped inside installed packages, with hand-made ImageNet
labels and boxes (``photos.json`` beside this file).

The images come from scikit-image (``skimage/data``), scikit-learn
(``sklearn/datasets/images``) and matplotlib (``mpl-data/sample_data``); a photo whose
package is not installed is skipped with a warning. Each photo has a primary label (the
sample's label), the set of classes acceptable as top-1 (``accept``), and per-object
boxes with their label sets; box labels are each object's first (primary) class.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch

from faithbench.datasets import register
from faithbench.datasets._common import log, make_sample, read_rgb
from faithbench.errors import ConfigError
from faithbench.labels import imagenet_class_names, synset_to_index
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

ANNOTATIONS = Path(__file__).with_name("photos.json")


def photo_path(entry: dict[str, Any]) -> Path | None:
    """Where ``entry``'s image lies in its installed package; None if the package is absent."""
    if importlib.util.find_spec(entry["package"]) is None:
        return None
    return Path(str(importlib.resources.files(entry["package"]).joinpath(entry["path"])))


def load_entries(only_expected: bool = False) -> list[dict[str, Any]]:
    """The annotation entries whose package is installed (a warning for each other one)."""
    out = []
    for e in json.loads(ANNOTATIONS.read_text())["photos"]:
        if only_expected and not e["expected"]:
            continue
        p = photo_path(e)
        if p is None:
            log.warning("photos: skipping %s: package %r is not installed", e["id"], e["package"])
            continue
        out.append({**e, "file": p})
    return out


class PhotosDataset(BenchDataset):
    """The bundled photos, labelled in the ImageNet label space."""

    label_space = "imagenet"
    multilabel = False
    ground_truth = frozenset({"boxes"})

    def __init__(self, preprocess: Preprocess, only_expected: bool) -> None:
        self.pre = preprocess
        self.class_names = imagenet_class_names()
        self.entries = load_entries(only_expected)
        index = synset_to_index()
        self.accept = [[index[s] for s in e["accept"]] for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Sample | None:
        e = self.entries[i]
        img = read_rgb(e["file"])
        if img is None:
            return None
        index = synset_to_index()
        boxes = torch.tensor([o["box"] for o in e["objects"]], dtype=torch.float32)
        labels = torch.tensor([index[o["labels"][0]] for o in e["objects"]])
        return make_sample(self.pre, img, torch.tensor(index[e["accept"][0]]),
                           f"photos/{e['id']}", boxes=boxes, box_labels=labels)


@register(needs_root=False, label_space="imagenet")
def photos(preprocess: Preprocess, only_expected: bool = False) -> BenchDataset:
    """Build the bundled photo set.

    Args:
        preprocess: the model's preprocessing.
        only_expected: keep only the photos a good ImageNet classifier should get right.
    """
    ds = PhotosDataset(preprocess, only_expected)
    if len(ds) == 0:
        raise ConfigError("photos: none of scikit-image, scikit-learn, matplotlib is "
                          "installed, so there are no photos to read")
    return ds
