"""``voc2007`` on a tiny VOC tree written in the exact native layout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from faithbench import datasets
from faithbench.datasets.voc2007 import VOC_CLASSES
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess

PRE = Preprocess(size=224, resize="shorter_side", mean=(103.939, 116.779, 123.68),
                 std=(1.0, 1.0, 1.0), bgr=True, pixel_scale=255)


def obj(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def write_voc(tmp: Path) -> Path:
    base = tmp / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    size = "<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
    ann = {
        "000001": [obj("dog", (11, 21, 60, 80)), obj("person", (1, 1, 20, 30), 1)],
        "000002": [obj("cat", (5, 5, 30, 30))],  # image is corrupt
        "000003": None,  # truncated XML
        "000004": [obj("unicorn", (1, 1, 5, 5))],  # not a VOC class
        "000005": [obj("cat", (2, 3, 40, 50), 1)],
    }
    for name, objs in ann.items():
        xml = base / "Annotations" / f"{name}.xml"
        if objs is None:
            xml.write_text("<annotation><filename>000003.jpg</filename><object><name>do")
        else:
            xml.write_text(f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>"
                           + size.format(w=100, h=80) + "".join(objs) + "</annotation>")
        img = base / "JPEGImages" / f"{name}.jpg"
        if name == "000002":
            img.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        else:
            Image.new("RGB", (100, 80), (200, 100, 50)).save(img, quality=95)
    (base / "ImageSets/Main/test.txt").write_text("\n".join(ann) + "\n")
    (base / "ImageSets/Main/dog_test.txt").write_text("000001  1\n")
    return tmp


def test_reads_labels_boxes_difficult_and_geometry(tmp_path, caplog):
    root = write_voc(tmp_path)
    flags = tmp_path / "difficult.txt"
    row = ["0"] * 20
    row[VOC_CLASSES.index("dog")] = "1"
    flags.write_text("000001\t" + "\t".join(row) + "\n")
    ds = datasets.build("voc2007", PRE, root=str(root), difficult_file=str(flags))
    assert len(ds) == 5 and ds.multilabel and ds.label_space == "voc"
    s = ds[0]
    expect = torch.zeros(20)
    expect[[VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]] = 1
    assert torch.equal(s.label, expect) and s.id == "voc2007/000001"
    # 100x80 -> shorter side 224: scale 2.8; VOC 1-based inclusive -> edges.
    r = 224 / 80
    assert s.image.shape == (3, 224, 280) and s.orig_size == (80, 100)
    assert torch.allclose(s.boxes, torch.tensor([[10, 20, 60, 80], [0, 0, 20, 30]]) * r)
    assert s.box_labels.tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert s.box_difficult.tolist() == [False, True]
    assert s.hard_classes.tolist() == [VOC_CLASSES.index("dog")]
    # Caffe preprocessing: BGR, 0-255, mean subtracted.
    assert s.image[:, 100, 100].tolist() == pytest.approx(
        [50 - 103.939, 100 - 116.779, 200 - 123.68], abs=3)
    # Not in the flag file: all its classes stay in the difficult subset (as TorchRay).
    assert ds[4].hard_classes.tolist() == [VOC_CLASSES.index("cat")]
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None and ds[2] is None and ds[3] is None
    for n in ("000002.jpg", "000003.xml", "000004.xml"):
        assert n in caplog.text
    assert "unicorn" in caplog.text


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_any_of_the_usual_roots(tmp_path, sub):
    write_voc(tmp_path)
    ds = datasets.build("voc2007", PRE, root=str(tmp_path / sub))
    assert len(ds) == 5 and ds[0].hard_classes is None


def test_clear_errors(tmp_path):
    root = write_voc(tmp_path)
    with pytest.raises(ConfigError, match=r"image_set 'tset'.*valid choices: test"):
        datasets.build("voc2007", PRE, root=str(root), image_set="tset")
    with pytest.raises(ConfigError, match="needs dataset.root"):
        datasets.build("voc2007", PRE)
    with pytest.raises(ConfigError, match="JPEGImages"):
        datasets.build("voc2007", PRE, root=str(tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets"))
    bad = tmp_path / "flags.txt"
    bad.write_text("000001 1 0 1\n")
    with pytest.raises(ConfigError, match="20 0/1 flags"):
        datasets.build("voc2007", PRE, root=str(root), difficult_file=str(bad))
