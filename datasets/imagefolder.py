"""``imagefolder``: any folder-per-class tree (``root/<class>/<image>``), no
localisation ground truth (deletion, insertion, confidence and robustness metrics
still apply).

Class index: position in ``classes`` when given (folder names, in the model's output
order), else the folder's ImageNet index when ``label_space=imagenet`` and the folders
are synsets (``n01440764``), else sorted folder names (torchvision's ImageFolder order).
"""

from __future__ import annotations

from pathlib import Path

import torch

from faithbench.datasets import register
from faithbench.datasets._common import make_sample, read_rgb, require_root
from faithbench.errors import ConfigError
from faithbench.labels import imagenet_class_names, synset_to_index
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

IMAGE_EXT = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LAYOUT = "a folder per class: root/<class>/<image>.jpg"


class ImageFolderDataset(BenchDataset):
    multilabel = False
    ground_truth = frozenset()

    def __init__(self, preprocess: Preprocess, items: list[tuple[Path, int]],
                 class_names: list[str], label_space: str, root: Path) -> None:
        self.pre, self.items, self.root = preprocess, items, root
        self.class_names, self.label_space = class_names, label_space

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample | None:
        path, label = self.items[i]
        img = read_rgb(path)
        if img is None:
            return None
        rel = path.relative_to(self.root).with_suffix("").as_posix()
        return make_sample(self.pre, img, torch.tensor(label), f"imagefolder/{rel}")


@register(needs_root=True)
def imagefolder(preprocess: Preprocess, root: str | None = None,
                classes: list[str] | None = None, label_space: str = "custom"
                ) -> BenchDataset:
    """Build a folder-per-class dataset.

    Args:
        root: the tree's top folder.
        classes: folder names in class-index order (the model's output order); folders
            not listed are left out.
        label_space: the model label space the indices belong to ("imagenet" maps
            synset folders to ImageNet indices; must match the model's).
    """
    base = require_root(root, "imagefolder", LAYOUT)
    folders = sorted(p.name for p in base.iterdir() if p.is_dir())
    if classes is not None:
        classes = [str(c) for c in classes]
        missing = [c for c in classes if c not in folders]
        if missing:
            raise ConfigError(f"imagefolder: classes {missing} have no folder under "
                              f"{str(base)!r}; folders: {', '.join(folders)}")
        index = {c: i for i, c in enumerate(classes)}
        names = list(classes)
    elif label_space == "imagenet":
        index = synset_to_index()
        bad = [f for f in folders if f not in index]
        if bad:
            raise ConfigError(f"imagefolder: label_space=imagenet needs synset folder "
                              f"names (n01440764, ...); not synsets: {', '.join(bad[:5])}")
        names = imagenet_class_names()
    else:
        index = {c: i for i, c in enumerate(folders)}
        names = folders
    items = [(p, index[d]) for d in folders if d in index
             for p in sorted((base / d).rglob("*")) if p.suffix.lower() in IMAGE_EXT]
    if not items:
        raise ConfigError(f"imagefolder: no images under {str(base)!r}; expected {LAYOUT}")
    return ImageFolderDataset(preprocess, items, names, label_space, base)
