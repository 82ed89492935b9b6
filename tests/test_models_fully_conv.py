"""TorchRay's fully convolutional pointing networks (``fully_convolutional=True``):
the gradient our logits give equals TorchRay's back-propagation of
``get_pointing_gradient`` from the class score map, written here independently; and
the checkpoint lookup (file, folder, torch hub cache)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from faithbench import methods
from faithbench.errors import ConfigError
from faithbench.models._fully_conv import FullyConvResNet, FullyConvVGG
from faithbench.models.torchray import FILES, find_checkpoint


class MiniVGG(nn.Module):
    """torchvision's VGG layout and forward (features, 7x7 adaptive pool, flatten,
    classifier Linear(C*7*7) - ReLU - Dropout - ...), 8 channels wide."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(8 * 49, 16), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mini_vgg() -> nn.Module:
    torch.manual_seed(0)
    return MiniVGG().eval()


def torchray_vgg_scores(vgg: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TorchRay's ``_caffe_vgg16_to_fc`` forward, from the Linear weights: [B,K,h,w]."""
    a = vgg.features(x)
    lins = [m for m in vgg.classifier if isinstance(m, nn.Linear)]
    a = F.relu(F.conv2d(a, lins[0].weight.view(16, 8, 7, 7), lins[0].bias))
    a = F.relu(F.conv2d(a, lins[1].weight[:, :, None, None], lins[1].bias))
    return F.conv2d(a, lins[2].weight[:, :, None, None], lins[2].bias)


def pointing_gradient(scores: torch.Tensor, c: int) -> torch.Tensor:
    """TorchRay's ``get_pointing_gradient``: exp(s_c) normalised to sum 1 over positions."""
    g = torch.zeros_like(scores)
    g[0, c] = torch.exp(scores[0, c])
    g[0, c] /= g[0, c].sum()
    return g


def test_vgg_equals_the_original_on_224_footprints_and_is_spatial_otherwise():
    vgg = mini_vgg()
    fc = FullyConvVGG(vgg).eval()
    x = torch.randn(2, 3, 28, 28)  # features 7x7: a 1x1 score map
    with torch.no_grad():
        assert torch.allclose(fc(x), vgg(x), atol=1e-5)
        s = torchray_vgg_scores(vgg, torch.randn(1, 3, 28, 44))
    assert s.shape[-2:] == (1, 5)  # a score map, not one score


@pytest.mark.parametrize("c", [0, 3])
def test_vgg_input_gradient_and_grad_cam_equal_torchrays_backward(c):
    vgg = mini_vgg()
    fc = FullyConvVGG(vgg).eval()
    x = torch.randn(1, 3, 28, 44)
    xr = x.clone().requires_grad_(True)
    acts = []

    def keep(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        acts.append(out)

    hook = vgg.features[4].register_forward_hook(keep)
    try:
        s = torchray_vgg_scores(vgg, xr)
        s.backward(pointing_gradient(s.detach(), c))
    finally:
        hook.remove()
    xo = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fc(xo)[0, c], xo)
    assert torch.allclose(g, xr.grad, rtol=1e-4, atol=1e-7)
    a = acts[0]
    ref = F.relu((a.grad.mean((2, 3), keepdim=True) * a).sum(1))  # Grad-CAM at features.4
    ref = F.interpolate(ref[None], size=(28, 44), mode="bilinear", align_corners=False)[0]
    ours = methods.get("grad_cam").fn(fc, x, torch.tensor([c]), layer="features.4")
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_resnet_gradient_equals_torchrays_backward():
    torch.manual_seed(0)
    r = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=5).eval()
    fc = FullyConvResNet(r).eval()
    x = torch.randn(1, 3, 224, 256)  # layer4 7x8: a 1x2 score map after the 7x7 pool
    xr = x.clone().requires_grad_(True)
    feat = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(xr))))))))
    s = F.conv2d(F.avg_pool2d(feat, 7, stride=1), r.fc.weight[:, :, None, None], r.fc.bias)
    assert s.shape[-2:] == (1, 2)
    s.backward(pointing_gradient(s.detach(), 2))
    xo = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fc(xo)[0, 2], xo)
    assert torch.allclose(g, xr.grad, rtol=1e-4, atol=1e-8)
    with torch.no_grad():  # 224x224: the ordinary logits
        y = torch.randn(1, 3, 224, 224)
        assert torch.allclose(fc(y), r(y), atol=1e-4)
    assert dict(fc.named_modules())["layer4"] is r.layer4


def test_checkpoint_is_a_file_a_folder_or_in_the_hub_cache(tmp_path, monkeypatch):
    f = tmp_path / FILES["resnet50_voc"]
    f.write_bytes(b"x")
    assert find_checkpoint("resnet50_voc", str(f)) == f
    assert find_checkpoint("resnet50_voc", str(tmp_path)) == f
    with pytest.raises(ConfigError, match="vgg16_voc-b050e8c3.pth.tar"):
        find_checkpoint("vgg16_voc", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match="needs model.checkpoint.*hub"):
        find_checkpoint("resnet50_voc", None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / FILES["resnet50_voc"]).write_bytes(b"x")
    assert find_checkpoint("resnet50_voc", None) == tmp_path / "hub" / "checkpoints" / FILES["resnet50_voc"]


@pytest.mark.slow
def test_resnet50_voc_fully_convolutional_from_a_torchray_file(tmp_path):
    from faithbench import models
    from faithbench.models.torchray import CAFFE, caffe_resnet50

    from test_models_torchray import to_torchray_resnet

    torch.manual_seed(0)
    ref = caffe_resnet50(20).eval()
    torch.save(to_torchray_resnet(ref.state_dict()), tmp_path / FILES["resnet50_voc"])
    plain = models.load("resnet50_voc", checkpoint=str(tmp_path))
    fc = models.load("resnet50_voc", checkpoint=str(tmp_path), fully_convolutional=True)
    assert fc.weights_id == plain.weights_id + "+fully_convolutional" and fc.cam_layer == "layer4"
    x = CAFFE.normalize(torch.rand(1, 3, 224, 224))
    with torch.no_grad():
        assert torch.allclose(fc.model(x), plain.model(x), atol=1e-3)
