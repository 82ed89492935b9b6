"""``torchvision`` and ``timm`` entries: offline weights, clear errors, CAM layers, and
the refusal of checkpoints that need arbitrary unpickling."""

from __future__ import annotations

import collections

import pytest
import torch
import torchvision

from faithbench import models
from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError
from faithbench.models._cam import check_layer, timm_cam_layer, torchvision_cam_layer


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_torchvision_missing_weights_says_where(hub):
    with pytest.raises(ConfigError) as e:
        models.load("torchvision", arch="resnet18", weights="IMAGENET1K_V1")
    msg = str(e.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(hub / "resnet18-f37072fd.pth") in msg and "model.checkpoint" in msg
    with pytest.raises(ConfigError, match="'resnet18'"):
        models.load("torchvision", arch="resnet81")
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        models.load("torchvision", arch="resnet18", weights="IMAGENET1K_V9")


def test_torchvision_from_hub_cache_and_checkpoint(hub, tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18().eval()
    hub.mkdir(parents=True)
    torch.save(ref.state_dict(), hub / "resnet18-f37072fd.pth")
    spec = models.load("torchvision", arch="resnet18", weights="IMAGENET1K_V1")
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(spec.model(x), ref(x))
    assert spec.cam_layer == "layer4" and spec.class_names[281] == "tabby"
    p = spec.preprocess
    assert (p.size, p.crop_pct, p.mean) == (224, 224 / 256, (0.485, 0.456, 0.406))
    torch.save(ref.state_dict(), tmp_path / "mine.pth")
    spec2 = models.load("torchvision", arch="resnet18", weights="IMAGENET1K_V1",
                        checkpoint=str(tmp_path / "mine.pth"), cam_layer="layer3.1")
    assert spec2.cam_layer == "layer3.1" and spec2.weights_id == spec.weights_id
    with pytest.raises(ConfigError, match=r"unknown CAM layer 'layer5'.*'layer4'"):
        models.load("torchvision", arch="resnet18", weights="IMAGENET1K_V1", cam_layer="layer5")


@pytest.mark.parametrize("arch,layer", [
    ("resnet50", "layer4"), ("vgg16", "features.29"), ("vgg11", "features.19"),
    ("densenet121", "features"), ("mobilenet_v2", "features"),
    ("mobilenet_v3_small", "features"), ("efficientnet_b0", "features"),
    ("convnext_tiny", "features"), ("inception_v3", "Mixed_7c"), ("googlenet", "inception5b"),
    ("regnet_y_400mf", "trunk_output"), ("mnasnet0_5", "layers"), ("vit_b_16", None),
])
def test_default_cam_layer_per_family(arch, layer):
    try:
        with torch.device("meta"):  # names only: no memory, no init time
            m = torchvision.models.get_model(arch, weights=None)
    except NotImplementedError:  # regnet's init reads its tensors
        m = torchvision.models.get_model(arch, weights=None)
    assert torchvision_cam_layer(arch, m) == layer
    if layer is not None:
        assert check_layer(m, layer) == layer
    if arch == "vgg16":  # TorchRay's Grad-CAM layer: the ReLU after the last conv
        assert isinstance(m.features[29], torch.nn.ReLU)
        assert isinstance(m.features[28], torch.nn.Conv2d)


def test_default_layer_is_the_last_spatial_map():
    # DenseNet-121's module names with thin layers (fast).
    m = torchvision.models.DenseNet(growth_rate=8, block_config=(6, 12, 24, 16),
                                    num_init_features=16).eval()
    out = {}
    h = dict(m.named_modules())[torchvision_cam_layer("densenet121", m)].register_forward_hook(
        lambda mod, i, o: out.setdefault("o", o))
    try:
        with torch.no_grad():
            m(torch.randn(1, 3, 64, 64))
    finally:
        h.remove()
    assert out["o"].shape[-2:] == (2, 2)  # 64 px / 32: the last map before pooling


def test_timm_missing_weights_and_checkpoint(tmp_path, monkeypatch, hub):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match=r"huggingface-cli download timm/resnet18\.a1_in1k"):
        models.load("timm", arch="resnet18.a1_in1k")
    torch.manual_seed(0)
    ref = timm.create_model("resnet18").eval()
    # The HF cache layout that timm's own downloads create.
    snap = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file(ref.state_dict(), str(snap / "model.safetensors"))
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    spec = models.load("timm", arch="resnet18.a1_in1k")
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(spec.model(x), ref(x))
    assert spec.cam_layer == "layer4" and spec.preprocess.interpolation == "bicubic"
    assert spec.preprocess.crop_pct == 0.95
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    spec2 = models.load("timm", arch="resnet18", checkpoint=str(tmp_path / "w.pth"))
    assert torch.allclose(spec2.model(x), ref(x))
    with pytest.raises(ConfigError, match="unknown timm model"):
        models.load("timm", arch="resnet18_typo")


def test_timm_efficientnet_cam_layer():
    import timm

    assert timm_cam_layer(timm.create_model("efficientnet_b0")) == "bn2"
    assert timm_cam_layer(timm.create_model("convnext_atto")) == "stages.3"


class Payload:
    """Not a tensor: unpickling it means running this module's code."""


def test_checkpoint_needing_unpickling_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"state_dict": collections.OrderedDict(w=torch.ones(1)), "x": Payload()}, p)
    with pytest.raises(ConfigError, match="arbitrary unpickling"):
        load_state_dict(p)
    with pytest.raises(ConfigError, match="arbitrary unpickling"):
        models.load("shapes_cnn", checkpoint=str(p))
