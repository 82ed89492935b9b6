"""Reference tests against Captum: the gradient family, Grad-CAM, Guided Grad-CAM, occlusion.

Captum returns per-channel attributions [B,3,H,W]; each test applies the channel
reduction that the faithbench method documents before comparing.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor

from faithbench.methods import get

captum_attr = pytest.importorskip("captum.attr")

TARGET = torch.tensor([0, 1, 2, 3])


def rel_err(ours: Tensor, ref: Tensor) -> float:
    """max |ours - ref| / max |ref|."""
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def run(name: str, model, x: Tensor, **params) -> Tensor:
    return get(name).fn(model, x, TARGET, **params)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about requires_grad and hooks
        yield


@pytest.fixture
def resnet_images() -> Tensor:
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_saliency_is_captum_abs_gradient_max_over_channels(tiny_cnn, images):
    # Captum's Saliency(abs=True) keeps channels; Simonyan et al. take the max over them.
    ref = captum_attr.Saliency(tiny_cnn).attribute(images, target=TARGET, abs=True).amax(1)
    assert rel_err(run("saliency", tiny_cnn, images), ref) < 1e-6


def test_saliency_on_resnet(tiny_resnet, resnet_images):
    ref = captum_attr.Saliency(tiny_resnet).attribute(resnet_images, target=TARGET, abs=True)
    assert rel_err(run("saliency", tiny_resnet, resnet_images), ref.amax(1)) < 1e-6
    ours = run("saliency", tiny_resnet, resnet_images, reduce="abs_sum")
    assert rel_err(ours, ref.sum(1)) < 1e-6


@pytest.mark.parametrize("fixture,layer,size", [("tiny_cnn", "features.5", 32), ("tiny_resnet", "layer3", 64)])
def test_grad_cam_matches_captum_layer_grad_cam(request, fixture, layer, size):
    model = request.getfixturevalue(fixture)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    lgc = captum_attr.LayerGradCam(model, model.get_submodule(layer))
    raw = lgc.attribute(x, target=TARGET, relu_attributions=True)  # [B,1,h,w]
    ref = captum_attr.LayerAttribution.interpolate(raw, (size, size), interpolate_mode="bilinear")[:, 0]
    assert rel_err(run("grad_cam", model, x, layer=layer), ref) < 1e-5
