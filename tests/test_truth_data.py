"""The two-cue dataset: layout, labels for both rules, exact interventions, bad input."""

from __future__ import annotations

import pytest
import torch

from faithbench import datasets, models
from faithbench.datasets._synth import CLASS_SHAPES, MARKER_COLOURS, render, sample_scene
from faithbench.datasets.cues import CLASSES, CUES, label_space
from faithbench.errors import ConfigError
from faithbench.models.cue_cnn import CLASSES as MODEL_CLASSES
from faithbench.models.shapes_cnn import PREPROCESS


def build(rule: str, n: int = 12):
    return datasets.build("cues", PREPROCESS, n=n, rule=rule)


def test_both_rules_label_the_same_images_with_their_own_cue():
    a, b = build("shape"), build("marker")
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        scene = a.scene(i)
        assert scene == sample_scene(0, a.scenes[i], 64, 3, marker=True)
        assert sa.id == sb.id == f"cues/0/{a.scenes[i]}"
        assert torch.equal(sa.image, sb.image) and torch.equal(sa.masks, sb.masks)
        assert sa.label.item() == scene.shape.kind and sb.label.item() == scene.marker.colour
        # masks in CUES order; the used cue carries the class, the other -1 - its value
        assert sa.mask_labels.tolist() == [scene.shape.kind, -1 - scene.marker.colour]
        assert sb.mask_labels.tolist() == [-1 - scene.shape.kind, scene.marker.colour]
        assert sa.masks.shape == (2, 64, 64) and bool(sa.masks.flatten(1).any(1).all())
        alone = render([scene], drop={"shape"}).marker_mask[0]  # the shape hides no marker
        assert torch.equal(sa.masks[1], alone)
        assert sb.box_labels.tolist() == [sb.label.item()]
        ys, xs = sb.masks[1].nonzero().T  # the used cue's tight box
        assert sb.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_interventions_remove_exactly_one_cue():
    ds = build("marker")
    idx = [0, 5, 7]
    v = ds.interventions(idx)
    for j, i in enumerate(idx):
        s = ds[i]
        assert torch.equal(v["clean"][j], s.image)  # batched re-render == the sample
        for key, cue in (("without_used", "marker"), ("without_other", "shape")):
            diff = (v[key][j] != s.image).any(0)
            m = s.masks[CUES.index(cue)]
            assert bool(diff.any()) and not bool((diff & ~m).any()), (key, i)


def test_label_spaces_and_class_names_match_the_models():
    assert CLASSES["shape"][:-1] == CLASS_SHAPES and CLASSES["marker"][:-1] == tuple(MARKER_COLOURS)
    assert MODEL_CLASSES == CLASSES
    for rule in CUES:
        ds = build(rule, 1)
        assert ds.label_space == label_space(rule) == models.get(f"cue_{rule}_cnn").info.label_space
        assert ds.class_names == list(CLASSES[rule])


@pytest.mark.parametrize("kw, match", [({"rule": "colour"}, "rule"), ({"n": 0}, "n >= 1"),
                                       ({"min_used_flip": 1.5}, "min_used_flip"),
                                       ({"max_other_flip": -0.1}, "max_other_flip")])
def test_bad_parameters_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        datasets.build("cues", PREPROCESS, **kw)


def test_scenes_with_a_marker_too_close_to_the_background_are_passed_over():
    import math

    from faithbench.datasets.cues import marker_contrast, scene_indices

    keep = scene_indices(0, 50)
    assert keep == sorted(keep) and len(keep) == 50
    for k in range(keep[-1] + 1):
        c = marker_contrast(sample_scene(0, k, 64, 3, marker=True))
        assert (k in keep) == (c >= 0.5)
    scene = sample_scene(0, keep[0], 64, 3, marker=True)
    colour = list(MARKER_COLOURS.values())[scene.marker.colour]
    assert marker_contrast(scene) == math.dist(colour, scene.background.base)
    assert scene_indices(0, 5, min_marker_contrast=0.0) == [0, 1, 2, 3, 4]
