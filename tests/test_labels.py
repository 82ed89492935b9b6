"""Label spaces: one class list per space, shared by models and datasets; a pair whose
class order differs under the same label-space name is refused before a run opens."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from PIL import Image

from faithbench import datasets, labels, models
from faithbench.errors import IncompatibleError
from faithbench.run import check_pair


def test_models_and_datasets_take_their_class_lists_from_the_labels_module():
    shapes = models.load("shapes_cnn")
    assert shapes.class_names == labels.class_names("shapes") == ["circle", "square", "triangle", "star", "cross"]
    assert datasets.build("shapes", shapes.preprocess, n=1).class_names == shapes.class_names
    for rule in ("shape", "marker"):
        spec = models.load(f"cue_{rule}_cnn")
        ds = datasets.build("cues", spec.preprocess, rule=rule, n=1)
        assert spec.class_names == ds.class_names == labels.class_names(labels.cue_space(rule))
        assert spec.label_space == ds.label_space == labels.cue_space(rule)
    from faithbench.datasets.voc2007 import VOC_CLASSES
    from faithbench.models.torchray import COCO_CLASSES
    assert VOC_CLASSES is labels.VOC_CLASSES and COCO_CLASSES is labels.COCO_CLASSES
    assert len(labels.class_names("voc")) == 20 and len(labels.class_names("coco")) == 80


def test_unknown_label_space_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown label space 'vocc'.*voc"):
        labels.class_names("vocc")


def test_class_order_problem_names_the_first_difference():
    assert labels.class_order_problem(["a", "b"], ["a", "b"]) is None
    assert labels.class_order_problem([], ["a"]) is None  # unknown on one side
    assert labels.class_order_problem(["a", "b", "c"], ["a", "c", "b"]) == \
        "class 1 is 'b' for the model but 'c' in the dataset"
    assert labels.class_order_problem(["a"], ["a", "b"]) == "the model has 1 classes but the dataset 2"


def test_check_pair_compares_class_order_not_only_the_name():
    cfg = OmegaConf.create({"model": {"name": "m"}, "dataset": {"name": "d"}})
    shapes = labels.class_names("shapes")
    check_pair(cfg, "shapes", "shapes", shapes, list(shapes))
    with pytest.raises(IncompatibleError, match="class 1 is 'square' for the model but 'cross'"):
        check_pair(cfg, "shapes", "shapes", shapes, sorted(shapes))
    with pytest.raises(IncompatibleError, match="predicts 'shapes' classes"):
        check_pair(cfg, "shapes", "voc", shapes, shapes)


def test_an_image_folder_in_alphabetical_order_is_refused_for_the_shapes_model(tmp_path, workdir):
    # Class-per-folder trees are indexed in sorted folder order; declaring them in the
    # shapes label space would silently mislabel 4 of 5 classes.
    for name in labels.SHAPES_CLASSES:
        (tmp_path / "tree" / name).mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(tmp_path / "tree" / name / "a.png")
    from faithbench.run import prepare

    cfg = OmegaConf.create(dict(
        model={"name": "shapes_cnn"}, method={"name": "grad_cam", "layer": None},
        dataset={"name": "imagefolder", "root": str(tmp_path / "tree"), "classes": None,
                 "label_space": "shapes", "shard": 0, "num_shards": 1, "limit": None,
                 "subset_seed": None},
        metric={}, metrics=[], target="label", seed=0, device="cpu", batch_size=2,
        num_workers=0, part_size=4, force=False, cache=False, out_dir="out",
        tracking={"uri": None, "experiment": "t"}))
    with pytest.raises(IncompatibleError, match="class 1 is 'square' for the model but 'cross'"):
        prepare(cfg)
    OmegaConf.update(cfg, "dataset.classes", list(labels.SHAPES_CLASSES))
    assert prepare(cfg) is not None
