"""The bundled ``photos`` set: annotations, package lookup, geometry of the boxes."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image

from faithbench import datasets
from faithbench.datasets import photos as photos_mod
from faithbench.datasets._imagenet_classes import imagenet_synsets, synset_to_index
from faithbench.preprocess import Preprocess

PRE = Preprocess(size=224, resize="center_crop", crop_pct=0.875)


def test_imagenet_label_space_is_the_sorted_synset_order():
    syn = imagenet_synsets()
    assert len(syn) == 1000 and list(syn) == sorted(syn)
    idx = synset_to_index()
    # Well-known indices of torchvision/timm ImageNet heads.
    assert idx["n01440764"] == 0 and idx["n02123045"] == 281 and idx["n15075141"] == 999
    ds = datasets.build("photos", PRE)
    assert ds.class_names[281] == "tabby" and ds.class_names[652] == "military uniform"


def test_annotations_are_consistent():
    data = json.loads(photos_mod.ANNOTATIONS.read_text())["photos"]
    idx = synset_to_index()
    assert len({e["id"] for e in data}) == len(data) >= 6
    for e in data:
        path = photos_mod.photo_path(e)
        assert path is not None and path.is_file(), e["id"]
        w, h = Image.open(path).size
        assert e["accept"] and all(s in idx for s in e["accept"])
        for o in e["objects"]:
            assert o["labels"] and all(s in idx for s in o["labels"])
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, e["id"]
        # The primary label is among the objects' primary labels.
        assert e["accept"][0] in {o["labels"][0] for o in e["objects"]}


def test_samples_carry_labels_and_boxes_in_input_pixels():
    ds = datasets.build("photos", PRE)
    assert ds.label_space == "imagenet" and ds.ground_truth == {"boxes"}
    for i in range(len(ds)):
        s = ds[i]
        e = ds.entries[i]
        w, h = Image.open(e["file"]).size
        assert s.image.shape == (3, 224, 224) and s.orig_size == (h, w)
        assert int(s.label) == synset_to_index()[e["accept"][0]]
        # Independent geometry: shorter side -> 256, centre 224 crop.
        r = 256 / min(h, w)
        rh, rw = round(h * r), round(w * r)
        top, left = (rh - 224) // 2, (rw - 224) // 2
        for box, o in zip(s.boxes.tolist(), e["objects"]):
            x0, y0, x1, y1 = o["box"]
            ref = [x0 * rw / w - left, y0 * rh / h - top, x1 * rw / w - left, y1 * rh / h - top]
            ref = [min(max(v, 0), 224) for v in ref]
            assert box == pytest.approx(ref, abs=1e-3)
        # Back to original pixels: orig = (input + offset) * scale.
        b = s.boxes[0]
        x0 = (b[0].item() + s.offset[1]) * s.scale[1]
        if e["objects"][0]["box"][0] * rw / w > left:  # not clipped by the crop
            assert x0 == pytest.approx(e["objects"][0]["box"][0], abs=1e-3)


def test_missing_package_is_skipped_with_a_warning(monkeypatch, caplog):
    real = photos_mod.photo_path
    monkeypatch.setattr(photos_mod, "photo_path",
                        lambda e: None if e["package"] == "sklearn" else real(e))
    with caplog.at_level(logging.WARNING):
        ds = datasets.build("photos", PRE)
    assert "china" not in {e["id"] for e in ds.entries}
    assert "package 'sklearn' is not installed" in caplog.text


def test_unreadable_photo_gives_none_and_one_warning(tmp_path, caplog):
    ds = datasets.build("photos", PRE)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    ds.entries[0] = {**ds.entries[0], "file": bad}
    with caplog.at_level(logging.WARNING):
        assert ds[0] is None
    assert str(bad) in caplog.text
    assert isinstance(ds[1].image, torch.Tensor)
