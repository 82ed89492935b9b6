"""Preprocess fields for replaying papers' input pipelines (``antialias``,
``size_rounding``) and ``model.preprocess`` overrides, against TorchRay's transform
written out as its code does it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faithbench import models
from faithbench.errors import ConfigError
from faithbench.models.torchray import CAFFE
from faithbench.preprocess import Preprocess, with_overrides

TORCHRAY = with_overrides(CAFFE, {"antialias": False, "size_rounding": "floor"})


def torchray_transform(img: torch.Tensor, size: int = 224) -> torch.Tensor:
    """TorchRay's ``get_transform(dataset='voc')``: ToTensor output [3,h,w] resized so
    the shorter side is ``size`` (the other ``int(size * long / short)``) by a plain
    bilinear ``F.interpolate``, then normalised with the RGB Caffe mean and std 1/255."""
    height, width = img.shape[1:3]
    if width < height:
        ow, oh = size, int(size * height / width)
    else:
        oh, ow = size, int(size * width / height)
    x = F.interpolate(img[None], (oh, ow), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor([123.68, 116.779, 103.939]).view(3, 1, 1) / 255
    return (x - mean) / (1 / 255)


@pytest.mark.parametrize("hw", [(375, 500), (500, 333), (400, 500), (224, 224), (640, 427), (481, 500)])
def test_torchray_transform_is_reproduced(hw):
    img = torch.rand(3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    g = TORCHRAY.geometry(*hw)
    ours = TORCHRAY.image(img, g).flip(0)  # BGR -> RGB
    ref = torchray_transform(img)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=2e-3)  # 0-255 scale: float32 rounding only


def test_floor_sizes_equal_int_division_and_round_differs():
    for h in range(100, 700, 7):
        for w in (333, 375, 500, 501):
            g = TORCHRAY.geometry(h, w)
            short, long_ = min(h, w), max(h, w)
            assert min(g.size) == 224 and max(g.size) == int(224 * long_ / short)
    assert CAFFE.geometry(375, 500).size == (224, 299)  # round: 298.67 -> 299
    assert TORCHRAY.geometry(375, 500).size == (224, 298)


def test_antialias_off_is_a_plain_interpolation():
    img = torch.rand(3, 90, 120)
    pre = Preprocess(size=30, resize="stretch", mean=(0.0,) * 3, std=(1.0,) * 3, antialias=False)
    ref = F.interpolate(img[None], (30, 30), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(pre.image(img, pre.geometry(90, 120)), ref)
    on = Preprocess(size=30, resize="stretch", mean=(0.0,) * 3, std=(1.0,) * 3)
    assert not torch.allclose(on.image(img, on.geometry(90, 120)), ref, atol=1e-3)


def test_overrides_replace_fields_and_reject_bad_names():
    pre = with_overrides(Preprocess(), {"resize": "stretch", "mean": [0.5, 0.5, 0.5], "size": 112})
    assert (pre.resize, pre.mean, pre.size, pre.std) == ("stretch", (0.5, 0.5, 0.5), 112, Preprocess().std)
    assert with_overrides(pre, None) is pre and with_overrides(pre, {}) is pre
    with pytest.raises(ConfigError, match="no field 'antialiasing'.*antialias"):
        with_overrides(pre, {"antialiasing": False})
    with pytest.raises(ConfigError, match="unknown model.preprocess.resize 'squash'.*stretch"):
        with_overrides(pre, {"resize": "squash"})
    with pytest.raises(ConfigError, match="3 values"):
        with_overrides(pre, {"std": [1.0]})


def test_model_load_applies_preprocess_overrides():
    spec = models.load("shapes_cnn", preprocess={"antialias": False, "size": 32})
    assert spec.preprocess.antialias is False and spec.preprocess.size == 32
    assert models.load("shapes_cnn").preprocess.size == 64
