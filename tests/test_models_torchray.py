"""The TorchRay pointing-game checkpoints, on synthetic state dicts written in the key
layout of TorchRay's Caffe conversions (see bench/models/torchray.py)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from faithbench import models
from faithbench.errors import ConfigError
from faithbench.models.torchray import CAFFE, caffe_resnet50, caffe_vgg16


def to_torchray_resnet(state: dict) -> dict:
    """torchvision names -> Caffe BatchNorm/Scale pairs; conv1 to BGR; no step counters."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        m = re.match(r"(.*(?:bn\d|downsample\.1))\.(weight|bias|running_mean|running_var)$", k)
        if m:
            k = f"{m[1]}.{1 if m[2] in ('weight', 'bias') else 0}.{m[2]}"
        out[k] = v
    out["conv1.weight"] = out["conv1.weight"].flip(1)
    return out


def to_torchray_vgg(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k = k.replace("classifier.3.", "classifier.2.").replace("classifier.6.", "classifier.4.")
        out[k] = v
    out["classifier.0.weight"] = out["classifier.0.weight"].reshape(4096, 512, 7, 7)
    out["features.0.weight"] = out["features.0.weight"].flip(1)
    return out


def rgb_reference_input(img: torch.Tensor) -> torch.Tensor:
    """TorchRay's own transform: RGB, 0-255, minus the RGB-ordered Caffe mean."""
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    return img * 255 - mean


def test_resnet50_key_mapping_covers_the_model():
    from faithbench.models.torchray import resnet50_keys

    with torch.device("meta"):  # names and shapes only
        model = caffe_resnet50(80)
    state = model.state_dict()
    mapped = resnet50_keys(to_torchray_resnet(state))
    expect = {k: v.shape for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in mapped.items()} == expect
    assert "layer3.5.bn2.1.weight" in to_torchray_resnet(state)


@pytest.mark.slow
def test_resnet50_voc_loads_torchray_layout(tmp_path):
    torch.manual_seed(0)
    ref = caffe_resnet50(20).eval()
    for m in ref.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = tmp_path / "resnet50_voc-9ca920d6.pth.tar"
    torch.save(to_torchray_resnet(ref.state_dict()), ckpt)
    spec = models.load("resnet50_voc", checkpoint=str(ckpt))
    assert spec.label_space == "voc" and spec.multilabel and spec.cam_layer == "layer4"
    assert spec.class_names[0] == "aeroplane" and len(spec.class_names) == 20
    m = spec.model
    assert m.maxpool.ceil_mode and m.maxpool.padding == 0 and m.conv1.bias is not None
    assert m.layer2[0].conv1.stride == (2, 2) and m.layer2[0].conv2.stride == (1, 1)
    img = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        ours = m(CAFFE.normalize(img))  # BGR input, BGR conv1
        theirs = ref(rgb_reference_input(img))  # RGB input, RGB conv1 (TorchRay)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-3)


def test_caffe_preprocessing():
    assert (CAFFE.resize, CAFFE.size, CAFFE.bgr, CAFFE.pixel_scale) == (
        "shorter_side", 224, True, 255.0)
    g = CAFFE.geometry(300, 500)
    assert g.size == (224, 373) and (g.top, g.left) == (0, 0)  # no crop
    x = CAFFE.normalize(torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1))
    assert x.flatten().tolist() == pytest.approx([-103.939, 127.5 - 116.779, 255 - 123.68])


def test_wrong_layout_and_missing_checkpoint_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="needs model.checkpoint"):
        models.load("resnet50_coco")
    bad = tmp_path / "x.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(ConfigError, match="TorchRay layout"):
        models.load("resnet50_coco", checkpoint=str(bad))


@pytest.mark.slow
def test_vgg16_coco_loads_torchray_layout(tmp_path):
    torch.manual_seed(0)
    ref = caffe_vgg16(80).eval()
    ckpt = tmp_path / "vgg16_coco-d82c8150.pth.tar"
    torch.save(to_torchray_vgg(ref.state_dict()), ckpt)
    spec = models.load("vgg16_coco", checkpoint=str(ckpt))
    assert spec.cam_layer == "features.29" and len(spec.class_names) == 80
    assert all(m.ceil_mode for m in spec.model.modules() if isinstance(m, nn.MaxPool2d))
    img = torch.rand(1, 3, 45, 60)  # odd sizes: ceil-mode pooling matters
    with torch.no_grad():
        assert torch.allclose(spec.model(CAFFE.normalize(img)), ref(rgb_reference_input(img)),
                              rtol=1e-4, atol=1e-3)


def test_vgg16_key_mapping_on_small_tensors():
    from faithbench.models.torchray import vgg16_keys

    state = {"features.0.weight": torch.zeros(2), "classifier.0.weight": torch.zeros(4, 2, 2, 2),
             "classifier.2.bias": torch.zeros(4), "classifier.4.weight": torch.zeros(3, 4, 1, 1)}
    out = vgg16_keys(state)
    assert set(out) == {"features.0.weight", "classifier.0.weight", "classifier.3.bias",
                        "classifier.6.weight"}
    assert out["classifier.0.weight"].shape == (4, 8) and out["classifier.6.weight"].shape == (3, 4)
