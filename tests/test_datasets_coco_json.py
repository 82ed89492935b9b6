"""``coco_json``: a COCO-format file made by the test, read by hand-checked geometry,
mapped to a model's classes, and scored through the runner against naive loops."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy import ndimage
from test_datasets_coco import to_string

from faithbench import datasets
from faithbench.datasets._synth import render, sample_scene
from faithbench.datasets._synth_draw import shape_polygon
from faithbench.cli import compose as cli_compose
from faithbench.errors import ConfigError, IncompatibleError
from faithbench.methods import get as method
from faithbench.models.shapes_cnn import PREPROCESS, shapes_cnn
from faithbench.preprocess import Preprocess
from faithbench.run import run

# The shapes classes under other spellings and ids (normalised names must still match).
CATEGORIES = [{"id": 11, "name": "Circle"}, {"id": 5, "name": " SQUARE"},
              {"id": 7, "name": "Triangle"}, {"id": 3, "name": "star"}, {"id": 20, "name": "Cross_"}]
KIND_TO_CAT = [11, 5, 7, 3, 20]  # shapes class index -> category id
N = 5


def rle_counts(mask: torch.Tensor) -> list[int]:
    """COCO's uncompressed RLE of a bool mask [h,w], by its definition: run lengths over
    the pixels in column-major order, starting with a run of 0s."""
    flat = mask.T.flatten().tolist()
    counts, cur, run_len = [], False, 0
    for v in flat:
        if v != cur:
            counts.append(run_len)
            cur, run_len = v, 0
        run_len += 1
    counts.append(run_len)
    return counts


def tight_xywh(mask: torch.Tensor) -> list[float]:
    rows, cols = np.nonzero(mask.numpy())
    return [float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
            float(rows.max() - rows.min() + 1)]


def write_shapes_tree(root) -> dict:
    """N shapes scenes as PNG with their exact masks: image 0 as list RLE, image 1 as
    compressed RLE, the rest as the generator's polygons; one image with no annotation
    and one category the model does not have."""
    (root / "img").mkdir()
    images, anns, truth = [], [], {}
    for i in range(N):
        scene = sample_scene(0, i, 64, 3)
        r = render([scene])
        arr = (r.image[0].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(arr).save(root / "img" / f"s{i}.png")
        mask = r.shape_mask[0]
        if i == 0:
            seg = {"size": [64, 64], "counts": rle_counts(mask)}
        elif i == 1:
            seg = {"size": [64, 64], "counts": to_string(rle_counts(mask))}
        else:
            seg = [shape_polygon(scene.shape).flatten().tolist()]
        images.append({"id": 100 + i, "file_name": f"s{i}.png", "height": 64, "width": 64})
        anns.append({"id": i + 1, "image_id": 100 + i, "category_id": KIND_TO_CAT[scene.shape.kind],
                     "bbox": tight_xywh(mask), "segmentation": seg, "iscrowd": 0,
                     "area": float(mask.sum())})
        truth[f"coco_json/s{i}"] = (scene.shape.kind, mask)
    Image.new("RGB", (64, 64)).save(root / "img" / "empty.png")
    images.append({"id": 999, "file_name": "empty.png", "height": 64, "width": 64})
    (root / "ann.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": CATEGORIES}))
    return truth


def test_reads_the_generator_ground_truth_by_name(tmp_path):
    truth = write_shapes_tree(tmp_path)
    ds = datasets.build("coco_json", PREPROCESS, root=str(tmp_path / "img"),
                        annotations=str(tmp_path / "ann.json"), label_space="shapes")
    assert len(ds) == N and ds.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert ds.ground_truth == {"boxes", "masks"} and not ds.multilabel
    for i in range(N):
        s = ds[i]
        kind, mask = truth[s.id]
        assert int(s.label) == kind and s.box_labels.tolist() == [kind]
        assert s.mask_labels.tolist() == [kind]
        rows, cols = np.nonzero(mask.numpy())
        assert s.boxes[0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        if i < 2:  # RLE: exact
            assert torch.equal(s.masks[0], mask) and torch.equal(s.orig_masks[0], mask)
        else:  # the generator's polygon filled by COCO's rule: equal but for edge pixels
            assert (s.masks[0] ^ mask).sum() <= 0.05 * mask.sum()


def write_hand_tree(root) -> None:
    """Two 6x8 images: image 1 with two cars (polygons), a crowd kite (RLE), a truck;
    image 2 with a person box only (no segmentation)."""
    (root / "img").mkdir()
    for n in ("a.png", "b.png"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(root / "img" / n)
    kite_rle = [4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2]  # rows 4-5, every column
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 6, "width": 8},
                   {"id": 2, "file_name": "b.png", "height": 6, "width": 8}],
        "categories": [{"id": 7, "name": "kite"}, {"id": 1, "name": "Person"},
                       {"id": 3, "name": "car"}, {"id": 4, "name": "truck"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 3], "area": 12,
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [6, 0, 2, 2], "area": 4,
             "segmentation": [[6, 0, 8, 0, 8, 2, 6, 2]]},
            {"id": 12, "image_id": 1, "category_id": 7, "bbox": [0, 4, 8, 2], "area": 16,
             "iscrowd": 1, "segmentation": {"size": [6, 8], "counts": to_string(kite_rle)}},
            {"id": 13, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "area": 1,
             "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]},
            {"id": 14, "image_id": 2, "category_id": 1, "bbox": [2, 1, 3, 2], "area": 6},
        ],
    }
    (root / "ann.json").write_text(json.dumps(data))


def hand(root, **kw):
    pre = Preprocess(size=16, resize="stretch")
    kw = {"label_space": "custom", "classes": ["person", "car", "kite", "truck"],
          "root": str(root / "img"), "annotations": str(root / "ann.json"), **kw}
    return datasets.build("coco_json", pre, **kw)


def test_hand_geometry_labels_and_options(tmp_path):
    write_hand_tree(tmp_path)
    ds = hand(tmp_path)
    # Image 2 has no segmentation: masks are not ground truth, boxes are.
    assert ds.ground_truth == {"boxes"} and len(ds) == 2 and ds.label_space == "custom"
    s = ds[0]
    assert int(s.label) == 2  # the crowd kite is the largest (area 16)
    assert s.box_labels.tolist() == [1, 1, 2, 3] and s.masks is None
    # Stretch 6x8 -> 16x16: x scale 2, y scale 16/6.
    torch.testing.assert_close(s.boxes[0], torch.tensor([2, 16 / 6, 10, 4 * 16 / 6]))
    torch.testing.assert_close(s.boxes[2], torch.tensor([0, 4 * 16 / 6, 16, 16]))
    assert int(ds[1].label) == 0 and ds[1].id == "coco_json/b"
    first = hand(tmp_path, label_from="first", crowd="drop")
    assert int(first[0].label) == 1 and first[0].box_labels.tolist() == [1, 1, 3]
    multi = hand(tmp_path, multilabel=True)
    assert multi[0].label.tolist() == [0.0, 1.0, 1.0, 1.0] and multi.multilabel
    # A table: truck counted as car, the person category (id 1) by class index.
    table = hand(tmp_path, category_map={"truck": "Car", 1: 0})
    assert table[0].box_labels.tolist() == [1, 1, 2, 1]


def test_hand_masks_are_class_unions_in_input_pixels(tmp_path):
    write_hand_tree(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1]
    del data["annotations"][1]["bbox"]  # boxed by its mask: columns 6-7, rows 0-1
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = hand(tmp_path)
    assert ds.ground_truth == {"boxes", "masks"} and len(ds) == 1
    s = ds[0]
    car = torch.zeros(6, 8, dtype=torch.bool)
    car[1:4, 1:5] = True
    car[0:2, 6:8] = True
    kite = torch.zeros(6, 8, dtype=torch.bool)
    kite[4:6, :] = True
    truck = torch.zeros(6, 8, dtype=torch.bool)
    truck[0, 0] = True
    assert s.mask_labels.tolist() == [1, 2, 3]
    torch.testing.assert_close(s.boxes[1], torch.tensor([12, 0, 16, 2 * 16 / 6]))
    assert torch.equal(s.orig_masks, torch.stack([car, kite, truck]))
    ref = torch.nn.functional.interpolate(torch.stack([car, kite, truck])[:, None].float(),
                                          size=(16, 16), mode="nearest")[:, 0] > 0.5
    assert torch.equal(s.masks, ref)


def test_matches_pycocotools_when_installed(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    write_shapes_tree(tmp_path)
    api = coco_api.COCO(str(tmp_path / "ann.json"))
    ds = datasets.build("coco_json", PREPROCESS, root=str(tmp_path / "img"),
                        annotations=str(tmp_path / "ann.json"), label_space="shapes")
    for i in range(N):
        (ann,) = api.loadAnns(api.getAnnIds(imgIds=[100 + i]))
        assert torch.equal(ds[i].orig_masks[0], torch.from_numpy(api.annToMask(ann).astype(bool)))


def test_errors_name_the_bad_value(tmp_path, caplog):
    write_hand_tree(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        hand(tmp_path, annotations=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="needs dataset.annotations"):
        datasets.build("coco_json", PREPROCESS, root=str(tmp_path / "img"))
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(ConfigError, match="needs the arrays images, annotations, categories"):
        hand(tmp_path, annotations=str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match=r"key 'lorry' is not a category.*4: 'truck'"):
        hand(tmp_path, category_map={"lorry": "car"})
    with pytest.raises(ConfigError, match=r"'bus' is not a model class name.*'person'"):
        hand(tmp_path, category_map={"truck": "bus"})
    with pytest.raises(ConfigError, match=r"value 4 is not a model class index \[0, 4\)"):
        hand(tmp_path, category_map={"truck": 4})
    with pytest.raises(ConfigError, match=r"no model class among the 3 classes of "
                       r"dataset.classes: 'truck' \(id 4\).*unmatched=drop"):
        hand(tmp_path, classes=["person", "car", "kite"])
    for key, value, message in (("category_id", 99, "annotation 13 has category_id 99, not in categories"),
                                ("bbox", [0, 0, -1, 1], r"annotation 13: bbox \[0, 0, -1, 1\] is not")):
        data = json.loads((tmp_path / "ann.json").read_text())
        data["annotations"][3][key] = value
        (tmp_path / "broken.json").write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=message):
            hand(tmp_path, annotations=str(tmp_path / "broken.json"))
    with pytest.raises(ConfigError, match="coco_json': unknown label_from 'biggest'.*first, largest"):
        hand(tmp_path, label_from="biggest")
    with caplog.at_level(logging.WARNING):
        dropped = hand(tmp_path, classes=["person", "car", "kite"], unmatched="drop")
    assert "'truck' (id 4)" in caplog.text and dropped[0].box_labels.tolist() == [1, 1, 2]
    table_drop = hand(tmp_path, classes=["person", "car", "kite"], category_map={"truck": None})
    assert table_drop[0].box_labels.tolist() == [1, 1, 2]


def naive_pointing(heat: torch.Tensor, mask: torch.Tensor) -> float:
    """Tolerance 1 px: a hit iff the map's first maximal pixel lies on the mask."""
    v, u = divmod(int(heat.flatten().argmax()), heat.shape[1])
    return float(mask[v, u])


def naive_box(heat: torch.Tensor, gt: list[float], threshold: float) -> tuple[float, float]:
    """(hit, IoU): keep > threshold * max, box the largest 8-connected component (scipy),
    a hit when its IoU with the ground-truth box is >= 0.5."""
    keep = (heat / heat.max()).double().numpy() > threshold
    lab, n = ndimage.label(keep, structure=np.ones((3, 3)))
    sizes = [(lab == k).sum() for k in range(1, n + 1)]
    rows, cols = np.nonzero(lab == 1 + int(np.argmax(sizes)))
    x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
    gx0, gy0, gx1, gy1 = gt
    iw = max(0.0, min(x1, gx1) - max(x0, gx0))
    ih = max(0.0, min(y1, gy1) - max(y0, gy0))
    inter = iw * ih
    iou = inter / ((x1 - x0) * (y1 - y0) + (gx1 - gx0) * (gy1 - gy0) - inter)
    return float(iou >= 0.5), float(iou)


def test_runner_scores_it_with_pointing_game_and_box_localisation(tmp_path, workdir):
    truth = write_shapes_tree(tmp_path)
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "model=shapes_cnn", "method=grad_cam", "dataset=coco_json",
            f"dataset.root={tmp_path / 'img'}", f"dataset.annotations={tmp_path / 'ann.json'}",
            "dataset.label_space=shapes", "metrics=[pointing_game,box_localisation]",
            "metric.pointing_game.tolerance=1", "metric.box_localisation.threshold=0.5",
            "device=cpu", "batch_size=3",
            "channels_last=false", "figures.grid=2", f"out_dir={tmp_path / 'out'}"])
    res = run(cfg)
    assert res["n_samples"] == N
    df = pd.concat(pd.read_parquet(p) for p in (tmp_path / "out").rglob("part-*.parquet"))
    spec = shapes_cnn()
    pg, box = {}, {}
    for i in range(N):
        sid = f"coco_json/s{i}"
        kind, mask = truth[sid]
        img = torch.from_numpy(np.array(Image.open(tmp_path / "img" / f"s{i}.png"))).permute(2, 0, 1)
        x = PREPROCESS.normalize(img.float() / 255)[None]
        heat = method("grad_cam").fn(spec.model, x, torch.tensor([kind]), layer="block3")[0].detach()
        pg[sid], box[sid] = naive_pointing(heat, mask), naive_box(heat, _xyxy(mask), 0.5)
    rows = df.set_index("id")
    assert {s: float(rows.loc[s, "pointing_game"]) for s in pg} == pg
    for s, (hit, iou) in box.items():
        assert float(rows.loc[s, "box_localisation"]) == hit
        assert float(rows.loc[s, "box_localisation_iou"]) == pytest.approx(iou, abs=1e-6)
    hits = [h for h, _ in box.values()]
    assert 0 < sum(pg.values()) < N and 0 < sum(hits) < N, (pg, box)  # both outcomes met


def _xyxy(mask: torch.Tensor) -> list[float]:
    x, y, w, h = tight_xywh(mask)
    return [x, y, x + w, y + h]


def test_a_bad_table_from_the_command_line_stops_before_any_run_opens(tmp_path, workdir):
    write_shapes_tree(tmp_path)
    base = ["dataset=coco_json", f"dataset.root={tmp_path / 'img'}",
            f"dataset.annotations={tmp_path / 'ann.json'}", "device=cpu"]
    with pytest.raises(ConfigError, match=r"'hexagon' is not a model class name"):
        run(cli_compose(base + ["dataset.label_space=shapes", "dataset.category_map={star: hexagon}"]))
    with pytest.raises(ConfigError, match=r"no model class among the 1000 classes of label_space "
                       r"'imagenet': 'Circle' \(id 11\)"):
        run(cli_compose(base))  # label_space defaults to imagenet
    with pytest.raises(IncompatibleError, match="predicts 'shapes' classes but dataset 'coco_json'"):
        run(cli_compose(base + ["dataset.classes=[circle,square,triangle,star,cross]"]))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])


def test_imagenet_names_match_after_normalising(tmp_path):
    write_hand_tree(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["categories"] = [{"id": 7, "name": "Tabby"}, {"id": 1, "name": "tiger_cat"},
                          {"id": 3, "name": "  Egyptian   cat"}, {"id": 4, "name": "crane"}]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"'crane' is ambiguous \(indices \[134, 517\]\)"):
        hand(tmp_path, label_space="imagenet", classes=None)
    ds = hand(tmp_path, label_space="imagenet", classes=None, category_map={"crane": 517})
    assert len(ds.class_names) == 1000 and ds.label_space == "imagenet"
    # car -> Egyptian cat (285), kite -> tabby (281), truck -> crane (517), person -> tiger cat (282)
    assert ds[0].box_labels.tolist() == [285, 285, 281, 517] and int(ds[1].label) == 282
