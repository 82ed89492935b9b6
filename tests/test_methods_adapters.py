"""The optional peer adapters `captum` and `pytorch_grad_cam`."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from faithbench.errors import ConfigError
from faithbench.methods import get

TARGET = torch.tensor([0, 1, 2, 3])
LAYER = "features.5"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_captum_saliency_equals_native_saliency(tiny_cnn, images):
    pytest.importorskip("captum")
    ours = get("captum").fn(tiny_cnn, images, TARGET, attribution="Saliency", reduce="max_abs",
                            attribute_kwargs={"abs": False})
    torch.testing.assert_close(ours, get("saliency").fn(tiny_cnn, images, TARGET))


def test_captum_layer_attributions_are_upsampled(tiny_cnn, images):
    pytest.importorskip("captum")
    ours = get("captum").fn(tiny_cnn, images, TARGET, attribution="LayerGradCam", layer=LAYER,
                            attribute_kwargs={"relu_attributions": True})
    torch.testing.assert_close(ours, get("grad_cam").fn(tiny_cnn, images, TARGET, layer=LAYER))


def test_captum_rejects_unknown_classes(tiny_cnn, images):
    pytest.importorskip("captum")
    with pytest.raises(ConfigError, match="unknown Captum attribution 'IntegratedGradient'.*'IntegratedGradients'"):
        get("captum").fn(tiny_cnn, images, TARGET, attribution="IntegratedGradient")
    with pytest.raises(ConfigError, match="needs `layer`"):
        get("captum").fn(tiny_cnn, images, TARGET, attribution="LayerGradCam", layer=None)


def test_pytorch_grad_cam_adapter_returns_the_peer_maps(tiny_cnn, images):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = get("pytorch_grad_cam").fn(tiny_cnn, images, TARGET, cam="GradCAMPlusPlus", layer=LAYER)
    with pgc.GradCAMPlusPlus(tiny_cnn, [tiny_cnn.features[5]]) as cam:
        ref = cam(images, [ClassifierOutputTarget(int(t)) for t in TARGET])
    torch.testing.assert_close(ours, torch.from_numpy(np.asarray(ref)))


def test_pytorch_grad_cam_adapter_leaves_the_model_alone(tiny_cnn, images):
    # The peer calls model.eval() and loss.backward(); the adapter undoes both effects,
    # and works on a frozen model (as the runner loads them) where the peer alone
    # would see no gradients.
    pytest.importorskip("pytorch_grad_cam")
    tiny_cnn.train()
    ours = get("pytorch_grad_cam").fn(tiny_cnn, images, TARGET, layer=LAYER)
    assert all(m.training for m in tiny_cnn.modules())
    assert all(p.grad is None and p.requires_grad for p in tiny_cnn.parameters())
    tiny_cnn.eval().requires_grad_(False)
    frozen = get("pytorch_grad_cam").fn(tiny_cnn, images, TARGET, layer=LAYER)
    torch.testing.assert_close(frozen, ours)
    assert ours.min() >= 0 and ours.max() == pytest.approx(1.0)  # the peer normalises to [0, 1]


def test_pytorch_grad_cam_rejects_unknown_classes(tiny_cnn, images):
    pytest.importorskip("pytorch_grad_cam")
    with pytest.raises(ConfigError, match="unknown pytorch-grad-cam class 'GradCam'.*'GradCAM'"):
        get("pytorch_grad_cam").fn(tiny_cnn, images, TARGET, cam="GradCam", layer=LAYER)


@pytest.mark.parametrize("name,module", [("captum", "captum"), ("pytorch_grad_cam", "pytorch_grad_cam")])
def test_missing_peer_names_the_extra(monkeypatch, tiny_cnn, images, name, module):
    for mod in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=r"pip install 'faithbench\[compare\]'"):
        get(name).fn(tiny_cnn, images, TARGET, layer=LAYER)
