"""The synthetic scene generator and the ``shapes`` dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

from faithbench import datasets
from faithbench.datasets._synth import (CLASS_SHAPES, MARKER_COLOURS, Distractor, render,
                                        sample_scene)
from faithbench.datasets._synth_draw import distractor_masks, polygon_mask, shape_polygon
from faithbench.datasets.shapes import mask_box
from faithbench.preprocess import Preprocess

PRE = Preprocess(size=64, resize="stretch", mean=(0.5,) * 3, std=(0.25,) * 3)


def centres(size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    return np.stack([xs.ravel(), ys.ravel()], 1)


@pytest.mark.parametrize("index", range(12))
def test_class_shape_mask_matches_matplotlib_point_in_polygon(index):
    scene = sample_scene(7, index)
    poly = shape_polygon(scene.shape)
    ours = polygon_mask(poly[None], 64)[0].numpy().ravel()
    ref = MplPath(poly.numpy().astype(np.float64)).contains_points(centres(64))
    # Pixel centres lying exactly on an edge are the only possible disagreement.
    assert (ours != ref).sum() <= 2
    assert ours.sum() > 50


def test_polygon_mask_hand_case():
    square = torch.tensor([[[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0]]])
    expect = torch.zeros(4, 4, dtype=torch.bool)
    expect[1:3, 1:3] = True
    assert torch.equal(polygon_mask(square, 4)[0], expect)


def test_distractor_masks_match_naive_loop():
    ds = (Distractor(0, 20.3, 30.1, 15.0, 2.0, 0.7, (1.0, 0.0, 0.0)),
          Distractor(1, 40.0, 20.0, 7.0, 1.5, 0.0, (0.0, 1.0, 0.0)))
    masks, colours = distractor_masks([ds], 64)
    for j, d in enumerate(ds):
        ref = torch.zeros(64, 64, dtype=torch.bool)
        for y in range(64):
            for x in range(64):
                dx, dy = x + 0.5 - d.cx, y + 0.5 - d.cy
                if d.kind == 0:
                    u = dx * math.cos(d.angle) + dy * math.sin(d.angle)
                    v = -dx * math.sin(d.angle) + dy * math.cos(d.angle)
                    ref[y, x] = abs(u) <= d.length / 2 and abs(v) <= d.width / 2
                else:
                    ref[y, x] = d.length - d.width <= math.hypot(dx, dy) <= d.length
        assert torch.equal(masks[0, j], ref)
        assert colours[0, j].tolist() == list(d.colour)


def test_deterministic_by_seed_and_index_and_order_free():
    a = datasets.build("shapes", PRE, n=20, seed=3)
    b = datasets.build("shapes", PRE, n=20, seed=3)
    s1 = a[17]
    _ = [b[i] for i in (4, 17, 2)]
    s2 = b[17]
    assert torch.equal(s1.image, s2.image) and torch.equal(s1.masks, s2.masks)
    assert s1.id == "shapes/3/17"
    other = datasets.build("shapes", PRE, n=20, seed=4)[17]
    assert not torch.equal(s1.image, other.image)
    scenes = [sample_scene(3, i) for i in range(5)]
    batch = render(scenes)
    single = render([scenes[2]])
    assert torch.allclose(batch.image[2], single.image[0])


def test_sample_ground_truth_is_the_visible_class_shape():
    ds = datasets.build("shapes", PRE, n=40, seed=0)
    assert ds.label_space == "shapes" and ds.class_names == list(CLASS_SHAPES)
    assert ds.ground_truth == {"boxes", "masks"} and not ds.multilabel
    labels = set()
    for i in range(40):
        s = ds[i]
        scene = sample_scene(0, i)
        labels.add(int(s.label))
        assert int(s.label) == scene.shape.kind == int(s.box_labels[0]) == int(s.mask_labels[0])
        m = s.masks[0]
        assert s.image.shape == (3, 64, 64) and m.shape == (64, 64) and m.sum() > 40
        assert torch.equal(s.boxes[0], mask_box(m))
        rows, cols = m.nonzero().T
        assert s.boxes[0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        r = render([scene])
        assert torch.allclose(PRE.denormalize(s.image), r.image[0], atol=1e-6)
        # Distractors never touch the class shape.
        assert not (r.distractor_mask[0] & m).any()
        assert s.orig_size == (64, 64) and s.scale == (1.0, 1.0) and s.offset == (0.0, 0.0)
    assert labels == set(range(len(CLASS_SHAPES)))


def test_boxes_and_masks_follow_a_resize():
    pre = Preprocess(size=128, resize="stretch")
    s = datasets.build("shapes", pre, n=3, seed=0)[1]
    small = datasets.build("shapes", PRE, n=3, seed=0)[1]
    assert s.image.shape == (3, 128, 128) and s.masks.shape == (1, 128, 128)
    assert torch.allclose(s.boxes, small.boxes * 2)
    assert s.scale == (0.5, 0.5)


def test_drop_redraws_background_and_marker_has_its_colour():
    scenes = [sample_scene(1, i, marker=True) for i in range(8)]
    full, bare = render(scenes), render(scenes, drop={"shape", "marker", "distractors"})
    no_marker = render(scenes, drop={"marker"})
    for i, sc in enumerate(scenes):
        m = full.marker_mask[i]
        assert m.sum() >= 9 and not (m & full.shape_mask[i]).any()
        colour = torch.tensor(list(MARKER_COLOURS.values())[sc.marker.colour])
        # Marker pixels show its colour (up to the pixel noise, clamped at [0,1]).
        assert (full.image[i][:, m].mean(1) - colour).abs().max() < 0.03
        assert torch.equal(no_marker.image[i][:, m], bare.image[i][:, m])
        keep = ~m
        assert torch.equal(no_marker.image[i][:, keep], full.image[i][:, keep])
        assert not no_marker.marker_mask[i].any()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="size >= 16"):
        datasets.build("shapes", PRE, size=8)
    with pytest.raises(IndexError):
        datasets.build("shapes", PRE, n=2)[2]
