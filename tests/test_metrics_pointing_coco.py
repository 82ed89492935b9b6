"""The pointing game on COCO scores the original-size instance-mask union, as TorchRay's
``coco_as_mask`` + ``PointingGame.evaluate`` (transcribed as a naive loop), on a tiny
COCO tree written by the test with objects 1-3 px wide that vanish at input size."""

from __future__ import annotations

import json
import math

import torch
from PIL import Image
from test_metrics_pointing import torchray_hit, torchray_point

from faithbench import datasets
from faithbench.metrics import get
from faithbench.preprocess import Preprocess
from faithbench.types import stack

pg = get("pointing_game").fn
H, W = 150, 250  # original image size
# category id -> axis-aligned rectangles (x0, y0, x1, y1) in COCO coordinates; with
# pixel centres at +0.5, a rectangle covers columns x0..x1-1 and rows y0..y1-1.
OBJECTS = {
    3: [(100, 10, 102, 140)],                # a pole 2 px wide: gone at 32 px
    7: [(20, 60, 23, 63), (200, 20, 201, 120)],  # a 3x3 blob and a 1-px wire
    1: [(30, 30, 90, 110)],                  # a large object
}


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_tree(root):
    (root / "val2014").mkdir()
    (root / "annotations").mkdir()
    names = [f"COCO_val2014_00000000000{i}.jpg" for i in (1, 2)]
    for n in names:
        Image.new("RGB", (W, H), (90, 90, 90)).save(root / "val2014" / n)
    anns = []
    for img_id in (1, 2):
        for cat, rects in OBJECTS.items():
            for r in rects:
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                             "iscrowd": 0, "bbox": [r[0], r[1], r[2] - r[0], r[3] - r[1]],
                             "segmentation": [rect(*r)]})
    data = {"images": [{"id": i + 1, "file_name": n, "height": H, "width": W}
                       for i, n in enumerate(names)],
            "categories": [{"id": c, "name": f"c{c}"} for c in (1, 3, 7)],
            "annotations": anns}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))


def torchray_mask(cat):
    """coco_as_mask: the union of the class's instance masks at the image size."""
    m = torch.zeros(H, W, dtype=torch.bool)
    for x0, y0, x1, y1 in OBJECTS[cat]:
        m[y0:y1, x0:x1] = True
    return m


def scored_batch(tmp_path, pre):
    write_tree(tmp_path)
    ds = datasets.build("coco2014", pre, root=str(tmp_path))
    batch = stack([ds[0], ds[1]], [0, 1])
    rows, cls = (batch.labels > 0.5).nonzero(as_tuple=True)  # one row per present class
    return batch.select(rows), cls, ds


def test_original_size_masks_equal_torchray_where_input_masks_vanish(tmp_path):
    pre = Preprocess(size=32, resize="shorter_side")  # 150x250 -> 32x53: scale ~4.7
    batch, cls, ds = scored_batch(tmp_path, pre)
    cats = {ds.class_names.index(f"c{c}"): c for c in OBJECTS}
    h, w = batch.images.shape[-2:]
    g = torch.Generator().manual_seed(0)
    sal = torch.rand(len(cls), h, w, generator=g)
    # Peaks on or near the thin objects (input pixels), so hits are at stake there.
    sy, sx = H / h, W / w
    for r, c in enumerate(cls.tolist()):
        x0, y0, x1, y1 = OBJECTS[cats[c]][-1]
        dx = (0, 30, 12, 18)[r % 4]  # on it, well off, and around the 15-px edge
        sal[r, int((y0 + y1) / 2 / sy), min(w - 1, int((x1 + dx) / sx))] = 2.0
    out = pg(None, batch.images, sal, cls, batch)["pointing_game"]
    exp = [float(torchray_hit(torchray_mask(cats[c]), torchray_point(sal[r], (H, W)), 15.0))
           for r, c in enumerate(cls.tolist())]
    assert out.tolist() == exp and not math.isnan(sum(exp)) and 0 < sum(exp) < len(exp)
    # The input-size masks lose the 2-px pole (and the wire): those pairs drop out.
    pole = ds.class_names.index("c3")
    old = pg(None, batch.images, sal, cls, batch, mask_resolution="input")["pointing_game"]
    assert torch.isnan(old[cls == pole]).all() and not torch.isnan(out[cls == pole]).any()
    # The energy pointing game keeps using the input-size masks.
    assert batch.masks[0].shape[-2:] == (h, w) and batch.orig_masks[0].shape[-2:] == (H, W)


def test_a_crop_scores_the_original_masks_under_its_footprint(tmp_path):
    pre = Preprocess(size=32, resize="center_crop", crop_pct=0.5)  # shorter side 64, crop 32
    batch, cls, ds = scored_batch(tmp_path, pre)
    h, w = batch.images.shape[-2:]
    sy, sx = (float(v) for v in batch.scale[0])
    top, left = (round(float(o) * s) for o, s in zip(batch.offset[0], (sy, sx)))
    size = (round(h * sy), round(w * sx))
    cats = {ds.class_names.index(f"c{c}"): c for c in OBJECTS}
    sal = torch.rand(len(cls), h, w, generator=torch.Generator().manual_seed(1))
    out = pg(None, batch.images, sal, cls, batch)["pointing_game"]
    for r, c in enumerate(cls.tolist()):
        under = torchray_mask(cats[c])[top : top + size[0], left : left + size[1]]
        if not under.any():  # the class lies outside the crop: no ground truth
            assert math.isnan(out[r])
            continue
        assert out[r].item() == float(torchray_hit(under, torchray_point(sal[r], size), 15.0))
