"""``imagenet`` (XML and CSV box layouts, synset folders) and ``imagefolder`` on tiny
trees written in their native formats."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from faithbench import datasets
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess

PRE = Preprocess(size=32, resize="stretch")
TENCH, TABBY = "n01440764", "n02123045"  # ImageNet indices 0 and 281


def img(path, size=(40, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (0, 128, 255)).save(path)


def xml(path, objs):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<object><name>{s}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for s, b in objs)
    path.write_text(f"<annotation><size><width>40</width><height>20</height></size>{body}"
                    "</annotation>")


def test_xml_layout(tmp_path, caplog):
    v = tmp_path / "val"
    for i in range(1, 6):
        img(v / f"ILSVRC2012_val_0000000{i}.JPEG")
    (v / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"\xff\xd8broken")
    xml(tmp_path / "bbox" / "ILSVRC2012_val_00000001.xml", [(TABBY, (4, 2, 20, 10)),
                                                             (TABBY, (0, 0, 40, 20))])
    xml(tmp_path / "bbox" / "ILSVRC2012_val_00000002.xml", [(TENCH, (1, 1, 3, 3))])
    xml(tmp_path / "bbox" / "ILSVRC2012_val_00000003.xml", [(TENCH, (1, 1, 3, 3))])
    (tmp_path / "bbox" / "ILSVRC2012_val_00000004.xml").write_text("<annotation><obj")
    with caplog.at_level(logging.WARNING):
        ds = datasets.build("imagenet", PRE, root=str(tmp_path), images="val")
    assert "1 images with neither" in caplog.text  # 00000005 has no boxes, no folder
    assert len(ds) == 4 and ds.label_space == "imagenet" and len(ds.class_names) == 1000
    s = ds[0]
    assert int(s.label) == 281 and s.box_labels.tolist() == [281, 281]
    assert s.id == "imagenet/ILSVRC2012_val_00000001"
    # 0-based inclusive (4, 2, 20, 10) -> edges (4, 2, 21, 11), then x 0.8, y 1.6; the
    # whole-image box (0, 0, 40, 20) -> (0, 0, 41, 21) is clipped to the 40x20 image
    assert torch.allclose(s.boxes, torch.tensor([[3.2, 3.2, 16.8, 17.6], [0, 0, 32, 32]]))
    assert int(ds[1].label) == 0
    with caplog.at_level(logging.WARNING):
        assert ds[2] is None and ds[3] is None
    assert "ILSVRC2012_val_00000003.JPEG" in caplog.text
    assert "ILSVRC2012_val_00000004.JPEG" in caplog.text


def test_csv_layout(tmp_path, caplog):
    for i in range(1, 4):
        img(tmp_path / "ILSVRC/Data/CLS-LOC/val" / f"ILSVRC2012_val_0000000{i}.JPEG")
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000001,{TENCH} 4 2 20 10 {TENCH} 0 0 8 8 \n"
        f"ILSVRC2012_val_00000002,{TABBY} 4 2 20\n"  # a broken row: 4 numbers
        "ILSVRC2012_val_00000003,n99999999 1 1 2 2\n")  # not a synset
    ds = datasets.build("imagenet", PRE, root=str(tmp_path))
    assert len(ds) == 3
    s = ds[0]
    assert int(s.label) == 0 and s.boxes.shape == (2, 4)
    assert torch.allclose(s.boxes[1], torch.tensor([0, 0, 7.2, 14.4]))  # (0, 0, 9, 9) edges
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None and ds[2] is None
    ds2 = datasets.build("imagenet", PRE, root=str(tmp_path), boxes="LOC_val_solution.csv")
    assert torch.equal(ds2[0].boxes, s.boxes)


def test_boxes_cover_the_pixels_the_devkit_counts(tmp_path):
    """ILSVRC boxes are inclusive pixel indices counted from 0: the devkit's
    compute_overlap.m counts (xmax - xmin + 1) * (ymax - ymin + 1) pixels, those with
    column xmin..xmax and row ymin..ymax, and the validation boxes reach xmax = W - 1
    (never W) and start at 0. At scale 1 the box's mask must be exactly those pixels,
    for XML and CSV alike; ``edges`` keeps the old reading."""
    from faithbench.types import boxes_to_mask

    box = (5, 3, 12, 20)  # xmin, ymin, xmax, ymax
    img(tmp_path / "x" / "ILSVRC2012_val_00000001.JPEG", size=(32, 32))
    xml(tmp_path / "x" / "ILSVRC2012_val_00000001.xml", [(TENCH, box)])
    img(tmp_path / "c" / "ILSVRC2012_val_00000002.JPEG", size=(32, 32))
    (tmp_path / "c" / "LOC.csv").write_text(
        f"ImageId,PredictionString\nILSVRC2012_val_00000002,{TENCH} {' '.join(map(str, box))}\n")
    want = torch.zeros(32, 32, dtype=torch.bool)
    for v in range(32):  # 0-based row / column indices
        for u in range(32):
            want[v, u] = box[0] <= u <= box[2] and box[1] <= v <= box[3]
    assert int(want.sum()) == (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    for sub, extra in (("x", {}), ("c", {"boxes": "c/LOC.csv"})):
        ds = datasets.build("imagenet", PRE, root=str(tmp_path), images=sub, **extra)
        assert torch.equal(boxes_to_mask(ds[0].boxes, (32, 32)), want), sub
    ds = datasets.build("imagenet", PRE, root=str(tmp_path), images="x", box_convention="edges")
    assert ds[0].boxes.tolist() == [[5.0, 3.0, 12.0, 20.0]]
    with pytest.raises(ConfigError, match="box_convention 'pixels'.*Valid choices: edges, inclusive"):
        datasets.build("imagenet", PRE, root=str(tmp_path), box_convention="pixels")


def test_synset_folders_without_boxes(tmp_path):
    img(tmp_path / "val" / TABBY / "a.JPEG")
    img(tmp_path / "val" / TENCH / "b.JPEG")
    ds = datasets.build("imagenet", PRE, root=str(tmp_path))
    assert [int(ds[i].label) for i in range(2)] == [0, 281]  # sorted by path: tench first
    assert ds[0].boxes.shape == (0, 4)
    with pytest.raises(ConfigError, match="does not exist"):
        datasets.build("imagenet", PRE, root=str(tmp_path), boxes="nope.csv")


def test_imagefolder(tmp_path, caplog):
    for c in ("dog", "cat", "bird"):
        img(tmp_path / c / "x1.png")
    (tmp_path / "cat" / "bad.jpg").write_bytes(b"nope")
    ds = datasets.build("imagefolder", PRE, root=str(tmp_path))
    assert ds.class_names == ["bird", "cat", "dog"] and ds.ground_truth == frozenset()
    labels = {ds.items[i][0].parent.name: ds.items[i][1] for i in range(len(ds))}
    assert labels == {"bird": 0, "cat": 1, "dog": 2}
    bad = next(i for i, (p, _) in enumerate(ds.items) if p.name == "bad.jpg")
    with caplog.at_level(logging.WARNING):
        assert ds[bad] is None
    assert "bad.jpg" in caplog.text
    s = ds[0]
    assert s.id == "imagefolder/bird/x1" and s.boxes is None and s.image.shape == (3, 32, 32)
    ds = datasets.build("imagefolder", PRE, root=str(tmp_path), classes=["dog", "cat"])
    assert sorted(lbl for _, lbl in ds.items) == [0, 1, 1]
    with pytest.raises(ConfigError, match="have no folder"):
        datasets.build("imagefolder", PRE, root=str(tmp_path), classes=["cow"])
    with pytest.raises(ConfigError, match="synset folder"):
        datasets.build("imagefolder", PRE, root=str(tmp_path), label_space="imagenet")


def test_imagefolder_synsets(tmp_path):
    img(tmp_path / TABBY / "x.jpg")
    ds = datasets.build("imagefolder", PRE, root=str(tmp_path), label_space="imagenet")
    assert int(ds[0].label) == 281 and ds.label_space == "imagenet"
