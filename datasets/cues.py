"""``cues``: synthetic scenes with two independent cues, for the known-truth track.

Every scene (``datasets/_synth.py`` with ``marker=True``) holds a class shape (circle,
square, triangle, star, cross) and, clear of it, a small coloured square marker (red,
green, blue, yellow), drawn independently. The generator gives the shape a colour at
least 0.5 (RGB distance) from the background's base colour but draws the marker's colour
regardless of it; a marker one can hardly see is no cue, so scenes whose marker is
closer than ``min_marker_contrast`` to the base colour are passed over (about 14% at
0.5): the dataset's item ``i`` is the ``i``-th scene index that passes, its id
``cues/<seed>/<scene index>``. The same images can be labelled by either
cue: ``rule="shape"`` labels by the shape, ``rule="marker"`` by the marker's colour. A
model trained on one rule uses that cue; the runner checks it by intervention before
scoring (``faithbench.truth``), with the re-renders this dataset provides.

Ground truth layout (what the known-truth metrics read): ``masks`` [2,H,W] holds the
shape's then the marker's visible mask; ``mask_labels`` gives the cue the rule uses its
class (>= 0, so ordinary metrics see it as the class's region) and the other cue
``-1 - value`` (negative: never a class, marks a cue the model does not use).
``boxes`` hold the used cue's box only. Sample ids do not depend on the rule, so runs of
the two models join on id. After the BAM idea (Yang & Kim, "Benchmarking Attribution
Methods with Relative Feature Importance", 2019): same images, two label rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from faithbench.datasets import register
from faithbench.datasets._common import make_sample
from faithbench.datasets._synth import MARKER_COLOURS, Scene, render, sample_scene
from faithbench.datasets.shapes import mask_box
from faithbench.errors import ConfigError, unknown_choice
from faithbench.labels import CUE_CLASSES, cue_space
from faithbench.preprocess import Preprocess
from faithbench.types import BenchDataset, Sample

Rule = Literal["shape", "marker"]
RULES: tuple[str, ...] = ("shape", "marker")
CUES = RULES  # order of the cue masks in every sample
CLASSES = CUE_CLASSES  # per rule, the class names (the last, "none": the cue was removed)
label_space = cue_space  # the label space of models trained on a rule: cues:rule=<rule>


def marker_contrast(scene: Scene) -> float:
    """RGB distance between the marker's colour and the background's base colour."""
    assert scene.marker is not None
    colour = list(MARKER_COLOURS.values())[scene.marker.colour]
    return math.dist(colour, scene.background.base)


def scene_indices(seed: int, n: int, size: int = 64, max_distractors: int = 3,
                  min_marker_contrast: float = 0.5) -> list[int]:
    """The first ``n`` scene indices of ``seed`` whose marker contrasts enough."""
    out, k = [], 0
    while len(out) < n:
        if k > 100 * n + 1000:
            raise ConfigError(f"cues: hardly any scene has a marker at least "
                              f"{min_marker_contrast} from its background; lower min_marker_contrast")
        if marker_contrast(sample_scene(seed, k, size, max_distractors, marker=True)) >= min_marker_contrast:
            out.append(k)
        k += 1
    return out


def cue_values(scene: Scene) -> dict[str, int]:
    """The class index of each cue of a scene."""
    assert scene.marker is not None
    return {"shape": scene.shape.kind, "marker": scene.marker.colour}


class CuesDataset(BenchDataset):
    """``n`` two-cue scenes of side ``size`` drawn with ``seed``, labelled by ``rule``."""

    multilabel = False
    ground_truth = frozenset({"boxes", "masks"})

    def __init__(self, preprocess: Preprocess, n: int, seed: int, size: int,
                 max_distractors: int, rule: str, min_marker_contrast: float,
                 min_used_flip: float, max_other_flip: float) -> None:
        self.pre, self.n, self.seed, self.size = preprocess, n, seed, size
        self.min_marker_contrast = min_marker_contrast
        self.scenes = scene_indices(seed, n, size, max_distractors, min_marker_contrast)
        self.max_distractors, self.rule = max_distractors, rule
        self.other = next(c for c in CUES if c != rule)
        self.min_used_flip, self.max_other_flip = min_used_flip, max_other_flip
        self.label_space = label_space(rule)
        self.class_names = list(CLASSES[rule])

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.n:
            raise IndexError(index)
        k = self.scenes[index]
        return sample_scene(self.seed, k, self.size, self.max_distractors, marker=True)

    def __getitem__(self, index: int) -> Sample:
        scene = self.scene(index)
        r = render([scene])
        values = cue_values(scene)
        label = torch.tensor(values[self.rule])
        masks = torch.cat([r.shape_mask, r.marker_mask])  # [2,S,S] in CUES order
        mask_labels = torch.tensor([values[c] if c == self.rule else -1 - values[c] for c in CUES])
        used = masks[CUES.index(self.rule)]
        return self._sample(r.image[0], label, f"cues/{self.seed}/{self.scenes[index]}",
                            boxes=mask_box(used)[None], box_labels=label[None],
                            masks=masks, mask_labels=mask_labels)

    def _sample(self, img: Tensor, label: Tensor, sid: str, **gt: Tensor) -> Sample:
        return make_sample(self.pre, img, label, sid, **gt)

    def identity(self) -> tuple[object, ...]:
        """What fixes the images and labels (for caching a verification)."""
        return ("cues", self.seed, self.n, self.size, self.max_distractors, self.rule,
                self.min_marker_contrast, repr(self.pre))

    def interventions(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The scenes at ``indices`` as model input [N,3,H,W] three ways: ``clean``,
        ``without_used`` (the rule's cue re-drawn as background) and ``without_other``
        (the other cue removed). Every other pixel, pixel noise included, is unchanged."""
        scenes = [self.scene(i) for i in indices]
        out = {}
        for key, drop in (("clean", ()), ("without_used", {self.rule}),
                          ("without_other", {self.other})):
            imgs = render(scenes, drop=drop).image
            out[key] = torch.stack([self._sample(im, torch.tensor(0), "").image for im in imgs])
        return out


@register(needs_root=False, label_space=None, interventions=True)
def cues(preprocess: Preprocess, n: int = 1000, seed: int = 0, size: int = 64,
         max_distractors: int = 3, rule: str = "shape", min_marker_contrast: float = 0.5,
         min_used_flip: float = 0.9, max_other_flip: float = 0.05) -> BenchDataset:
    """Build the two-cue set labelled by ``rule``.

    Args:
        preprocess: the model's preprocessing (cue models: 64x64, no resize).
        n: number of images. seed: scene seed (the cue models were trained on seed 777;
            0 is held out). size: image side. max_distractors: 0..N bars and rings.
        rule: ``shape`` or ``marker``: which cue labels the images; it must be the cue
            the model was trained on (the label spaces ``cues:rule=<rule>`` must match).
        min_marker_contrast: scenes whose marker colour is closer than this (RGB
            distance) to the background's base colour are passed over; in [0, sqrt(3)).
        min_used_flip: verification threshold: removing the used cue must change at
            least this share of the model's predictions.
        max_other_flip: removing the other cue may change at most this share.
    """
    if rule not in RULES:
        raise unknown_choice("cues rule", rule, RULES)
    if n < 1 or size < 16 or max_distractors < 0:
        raise ConfigError(f"cues: need n >= 1, size >= 16, max_distractors >= 0; got "
                          f"n={n}, size={size}, max_distractors={max_distractors}")
    for name, v, hi in (("min_used_flip", min_used_flip, 1.0),
                        ("max_other_flip", max_other_flip, 1.0),
                        ("min_marker_contrast", min_marker_contrast, 1.5)):
        if not 0.0 <= v <= hi:
            raise ConfigError(f"cues: {name}={v!r} is out of range; valid: [0, {hi}]")
    return CuesDataset(preprocess, n, seed, size, max_distractors, rule, min_marker_contrast,
                       min_used_flip, max_other_flip)
