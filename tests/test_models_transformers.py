"""Vision transformers as models: the ``timm`` entry, ``faithbench.from_module`` /
``find_cam_layer``, ``model=callable`` and ``faithbench.evaluate`` give a timm ViT, DeiT
or Swin its token layout and default CAM layer; any other module gets one by
``token_layout=``. Random weights, nothing downloaded."""

from __future__ import annotations

import copy
import textwrap

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import faithbench
from faithbench import models
from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.methods.grad_cam import layer_map as grad_cam_layer_map
from faithbench.models.module import find_cam_layer, from_module
from faithbench.tokens import TokenLayout, token_layout

timm = pytest.importorskip("timm")
from test_methods_cam_transformers import pgc_pipeline  # noqa: E402


def small(name: str, size=(32, 48), **kw) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("swin"):
        kw = dict(depths=(1, 1), num_heads=(1, 2), embed_dim=16, window_size=4, **kw)
    else:
        kw = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, **kw)
    return timm.create_model(name, pretrained=False, img_size=size, num_classes=5, **kw).eval()


@pytest.mark.parametrize("name,layer,layout", [
    ("vit_tiny_patch16_224", "blocks.1.norm1", TokenLayout(1)),
    pytest.param("deit_tiny_distilled_patch16_224", "blocks.1.norm1", TokenLayout(2),
                 marks=pytest.mark.slow),
    ("swin_tiny_patch4_window7_224", "layers.1.blocks.0.norm1", TokenLayout(0, channels_last=True)),
])
def test_from_module_and_find_cam_layer_know_timm_transformers(name, layer, layout):
    net = small(name)
    assert find_cam_layer(net, (3, 32, 48)) == layer
    spec = from_module(net, preprocess={"size": 32}, input_size=(3, 32, 48))
    assert spec.cam_layer == layer and spec.token_layout == layout
    x = torch.randn(2, 3, 32, 48)
    out = get("grad_cam").fn(spec.model, x, torch.tensor([1, 4]), layer=spec.cam_layer)
    assert out.shape == (2, 32, 48) and torch.isfinite(out).all()


class TokenNet(nn.Module):
    """A transformer-shaped toy that timm does not know: 4x4 patches embedded, a class
    token in front, one token-mixing layer, the class token classified."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 6, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], 1)
        t = torch.tanh(self.mix(t))
        return self.head(t[:, 0] + t[:, 1:].mean(1))


def test_any_module_can_declare_its_layout():
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(1)
    net = TokenNet().eval()
    peer_net = copy.deepcopy(net)  # from_module turns gradients off; pytorch-grad-cam needs them
    assert token_layout(net) is None
    spec = from_module(net, preprocess={"size": 16}, input_size=(3, 16, 24), cam_layer="mix",
                       token_layout=TokenLayout(prefix_tokens=1))
    assert token_layout(spec.model) == spec.token_layout == TokenLayout(1)
    x, t = torch.randn(2, 3, 16, 24), torch.tensor([0, 2])
    ours = grad_cam_layer_map(spec.model, x, t, "mix")  # [2,4,6]

    def reshape(a: Tensor) -> Tensor:
        return a[:, 1:].reshape(len(a), 4, 6, -1).permute(0, 3, 1, 2)

    with pgc.GradCAM(peer_net, [peer_net.mix], reshape_transform=reshape) as cam:
        ref = torch.from_numpy(np.asarray(cam(x, [ClassifierOutputTarget(int(i)) for i in t])))
    assert (pgc_pipeline(ours, (16, 24)) - ref).abs().max() < 1e-5


@pytest.mark.slow
def test_timm_entry_gives_a_vit_its_layout(tmp_path):
    net = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    path = tmp_path / "deit.pth"
    torch.save(net.state_dict(), path)
    spec = models.load("timm", arch="deit_tiny_distilled_patch16_224", checkpoint=str(path))
    assert spec.cam_layer == "blocks.11.norm1" and spec.token_layout == TokenLayout(2)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    assert models._cam.timm_cam_layer(swin) == "layers.3.blocks.1.norm1"
    with pytest.raises(ConfigError, match="blocks.11.norm"):
        models.load("timm", arch="deit_tiny_distilled_patch16_224", checkpoint=str(path),
                    cam_layer="blocks.11.norm")


FACTORY = '''
import timm


def build():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                             patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
'''


def test_callable_model_and_evaluate_with_a_vit(workdir):
    from faithbench.cli import compose
    from faithbench.run import prepare

    (workdir / "my_vits.py").write_text(textwrap.dedent(FACTORY))
    job = prepare(compose(["model=callable", "model.fn=my_vits:build", "model.size=64",
                           "model.resize=stretch", "model.label_space=shapes",
                           "model.class_names=[circle,square,triangle,star,cross]",
                           "dataset=shapes", "dataset.limit=2", "method=grad_cam",
                           "metrics=[deletion]", "device=cpu"]))
    assert job.scorer.spec.cam_layer == "blocks.1.norm1"
    assert job.scorer.spec.token_layout == TokenLayout(1)
    net = small("vit_tiny_patch16_224", size=32)
    x = torch.randn(2, 3, 32, 32)
    frame = faithbench.evaluate(net, x, [0, 3], methods=["grad_cam", "layer_cam"],
                                metrics=["deletion"], preprocess={"size": 32}, device="cpu")
    assert frame.attrs["cam_layer"] == "blocks.1.norm1"
    assert len(frame) == 4 and np.isfinite(frame["deletion"]).all()
