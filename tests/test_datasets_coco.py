"""``coco2014`` on a tiny COCO tree (instances JSON) and the mask decoders."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image

from faithbench import datasets
from faithbench.datasets._coco_masks import decode_polygons, decode_rle, rle_counts
from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess

PRE = Preprocess(size=16, resize="stretch")


def to_string(counts: list[int]) -> str:
    """COCO's compressed RLE string, written from its definition (for the round trip)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


def test_rle_decoding_hand_cases():
    assert rle_counts("4") == [4]
    counts = [3, 40, 1, 1000, 2, 2, 37]
    assert rle_counts(to_string(counts)) == counts
    # Column-major runs over a 2x3 image: (0,0) off; (1,0), (0,1), (1,1) on; rest off.
    m = decode_rle({"size": [2, 3], "counts": [1, 3, 2]})
    assert m.tolist() == [[False, True, False], [True, True, False]]
    with pytest.raises(ValueError, match="covers"):
        decode_rle({"size": [2, 3], "counts": [1, 3]})


def test_polygon_fill_uses_pixel_centres():
    m = decode_polygons([[1, 1, 5, 1, 5, 4, 1, 4]], 6, 8)
    expect = torch.zeros(6, 8, dtype=torch.bool)
    expect[1:4, 1:5] = True
    assert torch.equal(m, expect)


def write_coco(tmp):
    (tmp / "val2014").mkdir()
    (tmp / "annotations").mkdir()
    names = {1: "COCO_val2014_000000000001.jpg", 2: "COCO_val2014_000000000002.jpg",
             3: "COCO_val2014_000000000003.jpg", 4: "COCO_val2014_000000000004.jpg"}
    for i, n in names.items():
        if i == 2:
            (tmp / "val2014" / n).write_bytes(b"garbage")
        else:
            Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp / "val2014" / n)
    data = {
        "images": [{"id": i, "file_name": n, "height": 6, "width": 8} for i, n in names.items()],
        "categories": [{"id": 7, "name": "kite"}, {"id": 1, "name": "person"},
                       {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 3], "iscrowd": 0,
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [6, 0, 2, 2], "iscrowd": 0,
             "segmentation": [[6, 0, 8, 0, 8, 2, 6, 2]]},
            {"id": 12, "image_id": 1, "category_id": 7, "bbox": [0, 4, 8, 2], "iscrowd": 1,
             "segmentation": {"size": [6, 8], "counts": [4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2,
                                                         4, 2, 4, 2]}},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2]]},
            {"id": 14, "image_id": 3, "category_id": 99, "bbox": [0, 0, 2, 2], "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2]]},
        ],
    }
    (tmp / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return tmp


def test_reads_multilabel_masks_boxes(tmp_path, caplog):
    root = write_coco(tmp_path)
    ds = datasets.build("coco2014", PRE, root=str(root))
    # Image 4 has no annotation: left out. Contiguous order by category id.
    assert len(ds) == 3 and ds.class_names == ["person", "car", "kite"]
    s = ds[0]
    assert s.label.tolist() == [0.0, 1.0, 1.0] and s.id == "coco2014/COCO_val2014_000000000001"
    assert s.mask_labels.tolist() == [1, 2] and s.box_labels.tolist() == [1, 1, 2]
    # Stretch 6x8 -> 16x16: y scale 16/6, x scale 2.
    assert torch.allclose(s.boxes[0], torch.tensor([2, 16 / 6, 10, 4 * 16 / 6]))
    car = torch.zeros(6, 8, dtype=torch.bool)
    car[1:4, 1:5] = True
    car[0:2, 6:8] = True
    kite = torch.zeros(6, 8, dtype=torch.bool)
    kite[4:6, :] = True
    ref = torch.nn.functional.interpolate(torch.stack([car, kite])[:, None].float(),
                                          size=(16, 16), mode="nearest")[:, 0] > 0.5
    assert torch.equal(s.masks, ref)
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None and ds[2] is None
    assert "COCO_val2014_000000000002.jpg" in caplog.text
    assert "COCO_val2014_000000000003.jpg" in caplog.text


def test_difficult_flags_and_errors(tmp_path):
    root = write_coco(tmp_path)
    flags = tmp_path / "hard.txt"
    flags.write_text("COCO_val2014_000000000001\t0\t0\t1\n")
    ds = datasets.build("coco2014", PRE, root=str(root), difficult_file=str(flags))
    assert ds[0].hard_classes.tolist() == [2]
    with pytest.raises(ConfigError, match="instances_val2017.json"):
        datasets.build("coco2014", PRE, root=str(root), split="val2017")
