"""Reference tests of the CAM family against pytorch-grad-cam (and torchcam for CAM).

pytorch-grad-cam post-processes every map: ReLU, min-max normalisation at layer
resolution (``x - min`` then ``/ (max + 1e-7)``), ``cv2.resize`` (bilinear, half-pixel
centres, the same as ``F.interpolate(align_corners=False)``), then the same min-max
normalisation again at input resolution. Normalisation is affine and bilinear upsampling
is linear, so applying that exact pipeline to our raw layer map (``layer_map`` in each
method's module) must reproduce its output; we also check that our public output is
the plain bilinear upsampling of that raw layer map.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.methods import get

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGET = torch.tensor([0, 1, 2, 3])
CASES = [("tiny_cnn", "features.5", 32), ("tiny_resnet", "layer3", 64)]


def pgc_normalise(maps: Tensor) -> Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` normalisation of [B,h,w] maps."""
    maps = maps - maps.flatten(1).amin(1)[:, None, None]
    return maps / (1e-7 + maps.flatten(1).amax(1)[:, None, None])


def pgc_pipeline(layer_maps: Tensor, size: int) -> Tensor:
    up = F.interpolate(pgc_normalise(layer_maps)[:, None], size=(size, size), mode="bilinear",
                       align_corners=False)[:, 0]
    return pgc_normalise(up)


def pgc_run(cls_name: str, model, layer: str, x: Tensor, **kw) -> Tensor:
    cls = getattr(pgc, cls_name)
    with cls(model, [model.get_submodule(layer)], **kw) as cam:
        out = cam(x, [ClassifierOutputTarget(int(t)) for t in TARGET])
    return torch.from_numpy(np.asarray(out))


def layer_map(name: str, model, x: Tensor, layer: str, **params) -> Tensor:
    """Our raw map at layer resolution; also checks the public output upsamples it."""
    lm = importlib.import_module(f"faithbench.methods.{name}").layer_map(model, x, TARGET, layer, **params)
    public = get(name).fn(model, x, TARGET, layer=layer, **params)
    up = F.interpolate(lm[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(public, up, rtol=0, atol=0)
    return lm


def inputs(request, fixture: str, size: int):
    model = request.getfixturevalue(fixture)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(3))
    return model, x


@pytest.mark.parametrize("fixture,layer,size", CASES)
def test_grad_cam_matches_pytorch_grad_cam(request, fixture, layer, size):
    model, x = inputs(request, fixture, size)
    ours = pgc_pipeline(layer_map("grad_cam", model, x, layer), size)
    ref = pgc_run("GradCAM", model, layer, x)
    assert (ours - ref).abs().max() < 1e-5
