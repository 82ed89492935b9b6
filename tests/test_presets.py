"""Experiment presets of published protocols: each composes (Hydra) to the protocol
values written down in docs/presets.md and ../shared/REFERENCES.md, every job of its
sweep is a valid configuration, its published numbers are well formed. The end-to-end
run of a preset is in test_presets_run.py."""

from __future__ import annotations

import functools
import itertools

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from faithbench import datasets, methods, metrics, models
from faithbench.config import DATASET_KEYS, entry_params, fill_context
from faithbench.preprocess import Preprocess, with_overrides
from faithbench.report import published
from faithbench.run import apply_method_params

PRESETS = ["torchray_pointing_voc", "torchray_pointing_coco", "rise_deletion",
           "gradcam_localisation", "cam_localisation", "gradcam_pp_confidence", "road"]
TORCHRAY_INPUT = {"size": 224, "resize": "shorter_side", "interpolation": "bilinear",
                  "antialias": False, "size_rounding": "floor", "bgr": True,
                  "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0], "pixel_scale": 255.0}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# Per preset: overrides of one job -> the protocol values it must resolve to.
EXPECTED: dict[str, list[tuple[list[str], dict]]] = {
    "torchray_pointing_voc": [
        (["method=saliency"], {
            "model.name": "vgg16_voc", "dataset.name": "voc2007", "dataset.image_set": "test",
            "method.name": "saliency", "method.reduce": "max_abs", "target": "label",
            "metrics": ["pointing_game"], "metric.pointing_game.tolerance": 15.0,
            "metric.pointing_game.smooth": 0.02, "metric.pointing_game.ground_truth": "boxes",
            "model.fully_convolutional": True, "model.preprocess": TORCHRAY_INPUT,
            "dataset.difficult_file": "/data/pointing_game_ebp_voc07_difficult.txt",
            "dataset.limit": None, "seed": 0}),
        (["method=deconvnet", "model=resnet50_voc"], {
            "model.name": "resnet50_voc", "method.name": "deconvnet",
            "metric.pointing_game.smooth": 0.02}),
        (["method=guided_backprop"], {"method.name": "guided_backprop",
                                               "metric.pointing_game.smooth": 0.02}),
        (["method=grad_cam"], {"method.name": "grad_cam", "method.layer": None,
                                        "metric.pointing_game.smooth": 0.0}),
        (["method=center"], {"method.name": "center", "method.sigma": 0.25,
                             "metric.pointing_game.smooth": 0.0,
                             "model.preprocess.resize": "shorter_side"}),
        (["method=occlusion"], {"method.name": "occlusion", "metric.pointing_game.smooth": 0.0,
                                "model.preprocess.resize": "shorter_side"}),  # not TorchRay's
        (["method=rise"], {
            "method.name": "rise", "method.n_masks": 8000, "method.cells": 7,
            "method.keep_prob": 0.5, "method.activation": "sigmoid",
            "model.preprocess.resize": "stretch", "model.preprocess.size": 224,
            "model.preprocess.antialias": False, "metric.pointing_game.smooth": 0.0}),
        (["method=excitation_backprop"], {"method.layer": "features.23",
                                          "metric.pointing_game.smooth": 0.0}),
        (["method=contrastive_excitation_backprop", "model=resnet50_voc"], {
            "method.layer": "layer3", "method.contrast_layer": "avgpool",
            "method.classifier_layer": None, "model.preprocess.resize": "shorter_side"}),
        (["method=extremal_perturbation"], {
            "method.areas": [0.025, 0.05, 0.1, 0.2], "method.variant": "preserve",
            "method.perturbation": "blur", "method.reward": "simple", "method.max_iter": 800,
            "method.num_levels": 8, "method.max_blur": 20.0, "method.step": 7, "method.sigma": 21.0,
            "method.jitter": True, "method.smooth": 0.09, "metric.pointing_game.smooth": 0.0,
            "model.preprocess.resize": "shorter_side"}),
    ],
    "torchray_pointing_coco": [
        (["method=saliency", "model=resnet50_coco"], {
            "model.name": "resnet50_coco", "dataset.name": "coco2014", "dataset.split": "val2014",
            "method.name": "saliency", "metric.pointing_game.smooth": 0.02,
            "metric.pointing_game.ground_truth": "masks", "metric.pointing_game.tolerance": 15.0,
            "model.fully_convolutional": True, "model.preprocess": TORCHRAY_INPUT,
            "dataset.difficult_file": "/data/pointing_game_ebp_coco_difficult.txt", "target": "label"}),
        (["method=rise"], {"model.name": "vgg16_coco", "method.n_masks": 8000,
                                    "model.preprocess.resize": "stretch"}),
        (["method=contrastive_excitation_backprop"], {
            "method.layer": "features.23", "method.contrast_layer": "classifier.4",
            "metric.pointing_game.smooth": 0.0, "model.preprocess.resize": "shorter_side"}),
        (["method=extremal_perturbation", "model=resnet50_coco"], {
            "method.areas": [0.018, 0.025, 0.05, 0.1], "method.max_iter": 800,
            "method.smooth": 0.09, "metric.pointing_game.smooth": 0.0}),
    ],
    "rise_deletion": [
        (["method=rise"], {
            "model.name": "torchvision", "model.arch": "resnet50", "model.weights": "IMAGENET1K_V1",
            "model.preprocess": {"size": 224, "resize": "stretch", "interpolation": "bilinear",
                                 "antialias": True, **IMAGENET},
            "dataset.name": "imagenet", "dataset.limit": 10000, "dataset.subset_seed": None,
            "target": "pred", "metrics": ["deletion", "insertion"],
            "method.n_masks": 6000, "method.cells": 8, "method.keep_prob": 0.1,
            "method.activation": "softmax",
            "metric.deletion.step": 1 / 28, "metric.deletion.substitute": "zero",
            "metric.deletion.activation": "softmax", "metric.insertion.step": 1 / 28,
            "metric.insertion.substitute": "blur", "metric.insertion.blur_kernel": 11,
            "metric.insertion.blur_sigma": 5.0, "metric.insertion.activation": "softmax",
            "metric.deletion.ties": "rise", "metric.insertion.ties": "rise"}),
        (["method=grad_cam"], {"method.name": "grad_cam", "method.layer": None,
                               "metric.deletion.ties": "rise", "metric.insertion.ties": "rise"}),
    ],
    "gradcam_localisation": [
        ([], {"model.arch": "vgg16", "model.weights": "IMAGENET1K_V1", "method.name": "grad_cam",
              "method.layer": None, "target": "label", "metrics": ["box_localisation"],
              "metric.box_localisation.threshold": 0.15,
              "metric.box_localisation.threshold_rule": "max",
              "metric.box_localisation.iou_threshold": 0.5, "dataset.name": "imagenet",
              "dataset.limit": None, "model.preprocess.resize": "stretch",
              "model.preprocess.size": 224}),
    ],
    "cam_localisation": [
        ([], {"model.arch": "resnet50", "method.name": "cam", "method.layer": None,
              "target": "label", "metric.box_localisation.threshold": 0.2,
              "metric.box_localisation.threshold_rule": "max",
              "metric.box_localisation.iou_threshold": 0.5, "model.preprocess.resize": "stretch"}),
    ],
    "gradcam_pp_confidence": [
        (["method=grad_cam_pp"], {
            "model.arch": "vgg16", "model.weights": "IMAGENET1K_V1", "method.name": "grad_cam_pp",
            "method.layer": None, "target": "pred",
            "metrics": ["average_drop", "increase_in_confidence"],
            "metric.average_drop.space": "pixel", "metric.average_drop.activation": "softmax",
            "metric.average_drop.normalisation": "relu_max",
            "metric.increase_in_confidence.normalisation": "relu_max",
            "metric.increase_in_confidence.space": "pixel",
            "metric.increase_in_confidence.activation": "softmax",
            "model.preprocess": {"size": 224, "resize": "center_crop", "crop_pct": 1.0,
                                 "interpolation": "bilinear", "antialias": False, **IMAGENET},
            "dataset.name": "imagenet", "dataset.limit": None}),
        (["method=grad_cam"], {"method.name": "grad_cam"}),
    ],
    "road": [
        (["+pair=shapes", "method=grad_cam"], {
            "model.name": "shapes_cnn", "dataset.name": "shapes", "dataset.limit": 24,
            "metrics": ["road", "deletion", "insertion"], "tracking.experiment": "road",
            "metric.road.fractions": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            "metric.road.noise": 0.01, "target": "label"}),
        (["+pair=photos", "method=rise"], {
            "model.name": "efficientnet_lite0", "dataset.name": "photos", "method.n_masks": 200,
            "metrics": ["road", "deletion", "insertion"], "tracking.experiment": "road"}),
    ],
}
OFFLINE = {"road"}  # bundled models and data: no dataset.root
TORCHRAY_METHODS = ("center,saliency,deconvnet,guided_backprop,grad_cam,rise,excitation_backprop,"
                    "contrastive_excitation_backprop,extremal_perturbation")
SWEEPS = {
    "torchray_pointing_voc": {"model": "vgg16_voc,resnet50_voc", "method": TORCHRAY_METHODS},
    "torchray_pointing_coco": {"model": "vgg16_coco,resnet50_coco", "method": TORCHRAY_METHODS},
    "rise_deletion": {"method": "rise,grad_cam"},
    "gradcam_localisation": {"method": "grad_cam"},
    "cam_localisation": {"method": "cam"},
    "gradcam_pp_confidence": {"method": "grad_cam,grad_cam_pp"},
    "road": {"+pair": "shapes,photos", "method": ",".join(sorted(  # quick's methods
        {n for n in methods.names()
         if methods.get(n).info.models in ("any", "cnn") and not methods.get(n).info.oracle}
        - {"captum", "pytorch_grad_cam", "zennit"}))},
}


def _compose(overrides: list[str], hydra: bool = False):
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def _job(preset: str, overrides: list[str]):
    """A job's config as the runner sees it (method_params folded in), resolved."""
    return OmegaConf.create(_job_dict(preset, tuple(overrides)))


@functools.lru_cache(maxsize=None)
def _job_dict(preset: str, overrides: tuple[str, ...]) -> dict:
    root = [] if preset in OFFLINE else ["dataset.root=/data"]
    cfg = apply_method_params(_compose([f"experiment={preset}", *root, *overrides]))
    return OmegaConf.to_container(cfg, resolve=True)


def test_every_preset_is_tested():
    from importlib import resources

    files = {p.name[:-5] for p in (resources.files("faithbench.conf") / "experiment").iterdir()
             if p.name.endswith(".yaml")}
    assert files - {"quick", "truth", "gap_vs_gmp", "metric_card", "cnn_vs_vit"} == set(PRESETS)  # offline: own test files


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_sweeps_the_protocol(preset):
    cfg = _compose([f"experiment={preset}"], hydra=True)
    assert dict(cfg.hydra.sweeper.params) == SWEEPS[preset]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_resolves_to_the_protocol_values(preset):
    for overrides, expected in EXPECTED[preset]:
        cfg = _job(preset, overrides)
        for key, value in expected.items():
            got = OmegaConf.select(cfg, key)
            got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-12), (preset, overrides, key)
            else:
                assert got == value, (preset, overrides, key, got)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_job_of_the_sweep_is_a_valid_config(preset):
    """Each (model, method, ...) of the sweep: parameters its entries accept, metrics
    that exist, preprocess fields that exist, a model/dataset pair that fits."""
    keys, values = zip(*((k, v.split(",")) for k, v in SWEEPS[preset].items()))
    for combo in itertools.product(*values):
        cfg = _job(preset, [f"{k}={v}" for k, v in zip(keys, combo)])
        what = f"{preset} {combo}"
        fill_context(methods.get(cfg.method.name).fn, entry_params(cfg.method), {}, what)
        for m in cfg.metrics:
            fill_context(metrics.get(m).fn, entry_params(cfg.metric[m]), {}, what)
        model_params = entry_params(cfg.model)
        with_overrides(Preprocess(), model_params.pop("preprocess", None))  # fields and choices exist
        fill_context(models.get(cfg.model.name).fn, model_params, {}, what)
        fill_context(datasets.get(cfg.dataset.name).fn, entry_params(cfg.dataset, DATASET_KEYS), {}, what)
        assert models.get(cfg.model.name).info.label_space == datasets.get(cfg.dataset.name).info.label_space
        assert cfg.target in ("label", "pred")


@pytest.mark.parametrize("preset", PRESETS)
def test_published_numbers_are_keyed_by_what_the_preset_runs(preset):
    if preset in ("cam_localisation", "road"):  # no published number to compare with
        assert "published" not in _compose([f"experiment={preset}"])
        return
    cfg = _compose([f"experiment={preset}", "dataset.root=/data"], hydra=True)
    pub = published.from_block(OmegaConf.to_container(cfg.published, resolve=True))
    assert len(pub) > 0 and pub["source"].str.len().min() > 10
    sweep = SWEEPS[preset]
    swept_models = set(sweep.get("model", cfg.model.name).split(","))
    assert set(pub["model"]) <= swept_models and set(pub["dataset"]) == {cfg.dataset.name}
    jobs = [_job(preset, [f"{k}={v}"]) for k in sweep if k != "model" for v in sweep[k].split(",")]
    ran = {j.method.name for j in jobs}
    assert set(pub["method"]) <= ran
    for key in pub["key"]:  # a score the preset's metrics output, with its direction
        owners = [m for m in cfg.metrics if metrics.get(m).info.direction(m, key) is not None]
        assert owners, (preset, key)
    units = {"pointing_game": (0, 1), "pointing_game_difficult": (0, 1), "deletion": (0, 1),
             "insertion": (0, 1), "box_localisation_top1_error": (0, 1),
             "box_localisation_top5_error": (0, 1), "average_drop": (0, 100),
             "increase_in_confidence": (0, 100)}
    for _, r in pub.iterrows():
        lo, hi = units[r["key"]]
        assert lo <= r["published"] <= hi, (preset, r.to_dict())
        assert r["unverified"] in (True, False)


def test_torchray_published_table_matches_the_reference_table():
    """The 72 numbers of TorchRay's docs/pointing.csv as ../shared/REFERENCES.md gives them."""
    ref = {  # method: (VOC VGG16 all, diff, VOC R50 all, diff, COCO VGG16 ..., COCO R50 ...)
        "center": (69.6, 42.4, 69.6, 42.4, 27.8, 19.5, 27.8, 19.5),
        "saliency": (76.3, 56.9, 72.3, 56.8, 37.7, 31.4, 35.0, 29.4),
        "deconvnet": (67.5, 44.2, 68.6, 44.7, 30.7, 23.0, 30.0, 21.9),
        "guided_backprop": (75.9, 53.0, 77.2, 59.4, 39.1, 31.4, 42.1, 35.3),
        "rise": (86.9, 75.1, 86.4, 78.8, 50.8, 45.3, 54.7, 50.0),
        "grad_cam": (86.6, 74.0, 90.4, 82.3, 54.2, 49.0, 57.3, 52.3),
        "excitation_backprop": (77.1, 56.6, 84.5, 70.8, 39.8, 32.8, 49.6, 43.9),
        "contrastive_excitation_backprop": (79.9, 66.5, 90.7, 82.1, 49.7, 44.3, 58.5, 53.6),
        "extremal_perturbation": (88.0, 76.1, 88.9, 78.7, 51.5, 45.9, 56.5, 51.5),
    }
    cols = [("vgg16_voc", "voc2007"), ("resnet50_voc", "voc2007"),
            ("vgg16_coco", "coco2014"), ("resnet50_coco", "coco2014")]
    got = {}
    for preset in ("torchray_pointing_voc", "torchray_pointing_coco"):
        cfg = _compose([f"experiment={preset}"])
        for _, r in published.from_block(OmegaConf.to_container(cfg.published)).iterrows():
            got[(r["model"], r["dataset"], r["method"], r["key"])] = r["published"]
    assert len(got) == 72
    for method, row in ref.items():
        for j, (model, ds) in enumerate(cols):
            assert got[(model, ds, method, "pointing_game")] == pytest.approx(row[2 * j] / 100)
            assert got[(model, ds, method, "pointing_game_difficult")] == pytest.approx(row[2 * j + 1] / 100)
