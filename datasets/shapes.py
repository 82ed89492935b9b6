"""``shapes``: procedurally generated scenes with exact ground truth, no files.

Each image holds one class-defining filled shape (circle, square, triangle, star, cross)
at a random position, size, rotation and colour on a textured background, plus 0..N
distractors from other shape families (thin bars, hollow rings) that belong to no class.
The shape's exact mask and box are the ground truth. Deterministic by ``(seed, index)``.
"""

from __future__ import annotations

import torch

from faithbench.datasets import register
from faithbench.datasets._common import make_sample
from faithbench.datasets._synth import CLASS_SHAPES, render, sample_scene
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight xyxy box [4] (pixel edges) of a non-empty bool mask [H,W]."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)


class ShapesDataset(BenchDataset):
    """``n`` scenes of side ``size`` drawn with ``seed``; label = index in CLASS_SHAPES."""

    label_space = "shapes"
    class_names = list(CLASS_SHAPES)
    multilabel = False
    ground_truth = frozenset({"boxes", "masks"})

    def __init__(self, preprocess: Preprocess, n: int, seed: int, size: int,
                 max_distractors: int) -> None:
        self.pre, self.n, self.seed, self.size = preprocess, n, seed, size
        self.max_distractors = max_distractors

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        scene = sample_scene(self.seed, index, self.size, self.max_distractors)
        r = render([scene])
        mask = r.shape_mask  # [1,S,S]
        label = torch.tensor(scene.shape.kind)
        return make_sample(self.pre, r.image[0], label, f"shapes/{self.seed}/{index}",
                           boxes=mask_box(mask[0])[None], box_labels=label[None],
                           masks=mask, mask_labels=label[None])


@register(needs_root=False, label_space="shapes")
def shapes(preprocess: Preprocess, n: int = 1000, seed: int = 0, size: int = 64,
           max_distractors: int = 3) -> BenchDataset:
    """Build the synthetic shapes set.

    Args:
        preprocess: the model's preprocessing (shapes_cnn: 64x64, no resize).
        n: number of images.
        seed: scene seed; ``shapes_cnn`` was trained on seed 12345, so 0 is held out.
        size: image side in pixels before preprocessing.
        max_distractors: each image has 0..max_distractors distractors.
    """
    if n < 1 or size < 16 or max_distractors < 0:
        raise ConfigError(f"shapes: need n >= 1, size >= 16, max_distractors >= 0; got "
                          f"n={n}, size={size}, max_distractors={max_distractors}")
    return ShapesDataset(preprocess, n, seed, size, max_distractors)
