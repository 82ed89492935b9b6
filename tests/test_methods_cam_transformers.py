"""The CAM family on vision transformers (timm ViT, distilled DeiT, ViT with register
tokens, Swin), against pytorch-grad-cam with the ``reshape_transform`` its documentation
gives for each (prefix tokens dropped, patch tokens reshaped to the grid; Swin's
``[B,h,w,C]`` permuted), after its normalisation (see ``test_methods_cam.py``).

Models are small random timm networks built here, on non-square inputs (the grid is
4x6 patches), with one target class per sample.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.models._cam import transformer_cam_layer
from faithbench.tokens import TokenLayout, grid, set_token_layout, token_layout

timm = pytest.importorskip("timm")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

SIZE = (32, 48)
TARGET = torch.tensor([0, 1, 2, 3])
VIT = dict(img_size=SIZE, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "vit":
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, **VIT).eval()
    if kind == "deit_distilled":
        return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, **VIT).eval()
    if kind == "vit_registers":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(reg_tokens=4, **VIT).eval()
    if kind == "swin":
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False,
                                 img_size=SIZE, depths=(1, 1), num_heads=(1, 2), embed_dim=16,
                                 window_size=4, num_classes=5).eval()
    raise ValueError(kind)


KINDS = {"vit": 1, "deit_distilled": 2, "vit_registers": 5, "swin": 0}
SLOW = pytest.mark.slow


def kinds(*fast: str) -> list:
    """Every kind, those not in ``fast`` marked slow (the suite must stay quick)."""
    return [k if k in fast else pytest.param(k, marks=SLOW) for k in KINDS]

LAYERS = {"vit": "blocks.1.norm1", "deit_distilled": "blocks.1.norm1",
          "vit_registers": "blocks.1.norm1", "swin": "layers.1.blocks.0.norm1"}


def reshape_transform(kind: str):
    """pytorch-grad-cam's documented reshape transforms (its ViT and Swin tutorials)."""
    prefix = KINDS[kind]

    def vit(t: Tensor) -> Tensor:
        h, w = SIZE[0] // 8, SIZE[1] // 8
        r = t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2))
        return r.transpose(2, 3).transpose(1, 2)

    def swin(t: Tensor) -> Tensor:  # timm's Swin blocks are already [B,h,w,C]
        return t.permute(0, 3, 1, 2)

    return swin if kind == "swin" else vit


def pgc_normalise(maps: Tensor) -> Tensor:
    maps = maps - maps.flatten(1).amin(1)[:, None, None]
    return maps / (1e-7 + maps.flatten(1).amax(1)[:, None, None])


def pgc_pipeline(layer_maps: Tensor, size: tuple[int, int]) -> Tensor:
    up = F.interpolate(pgc_normalise(layer_maps)[:, None], size=size, mode="bilinear",
                       align_corners=False)[:, 0]
    return pgc_normalise(up)


def pgc_run(cls_name: str, model: nn.Module, layer: str, x: Tensor, kind: str,
            target: Tensor = TARGET) -> Tensor:
    cls = getattr(pgc, cls_name)
    with cls(model, [model.get_submodule(layer)], reshape_transform=reshape_transform(kind)) as cam:
        out = cam(x, [ClassifierOutputTarget(int(t)) for t in target])
    return torch.from_numpy(np.asarray(out))


def layer_map(name: str, model: nn.Module, x: Tensor, layer: str, target: Tensor = TARGET,
              **params) -> Tensor:
    """Our raw map at layer resolution; also checks the public output upsamples it."""
    lm = importlib.import_module(f"faithbench.methods.{name}").layer_map(model, x, target, layer, **params)
    public = get(name).fn(model, x, target, layer=layer, **params)
    up = F.interpolate(lm[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(public, up, rtol=0, atol=0)
    return lm


def images(n: int = 4) -> Tensor:
    return torch.randn(n, 3, *SIZE, generator=torch.Generator().manual_seed(3))


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.factor


@pytest.mark.parametrize("kind", KINDS)
def test_layout_and_default_layer_per_family(kind):
    model = build(kind)
    assert token_layout(model) == TokenLayout(prefix_tokens=KINDS[kind], channels_last=kind == "swin")
    assert transformer_cam_layer(model) == LAYERS[kind]
    assert token_layout(Scaled(model, 2.0)) == token_layout(model)  # found inside a wrapper


def test_cnns_have_no_layout(tiny_cnn, tiny_resnet):
    assert token_layout(tiny_cnn) is None and token_layout(tiny_resnet) is None
    assert transformer_cam_layer(tiny_resnet) is None


def test_layout_round_trip_keeps_prefix_tokens():
    layout = TokenLayout(prefix_tokens=2)
    out = torch.randn(3, 2 + 4 * 6, 5)
    fmap = layout.to_map(out, SIZE)
    assert fmap.shape == (3, 5, 4, 6)
    # Patch token i is grid cell (i // 6, i % 6): raster order.
    torch.testing.assert_close(fmap[:, :, 1, 2], out[:, 2 + 1 * 6 + 2], rtol=0, atol=0)
    torch.testing.assert_close(layout.from_map(fmap, out), out, rtol=0, atol=0)
    nhwc = TokenLayout(channels_last=True)
    out4 = torch.randn(3, 4, 6, 5)
    torch.testing.assert_close(nhwc.to_map(out4, SIZE), out4.permute(0, 3, 1, 2), rtol=0, atol=0)
    torch.testing.assert_close(nhwc.from_map(nhwc.to_map(out4, SIZE), out4), out4, rtol=0, atol=0)
    conv = nn.Conv2d(3, 5, 1)  # a convolution's output stays [B,C,h,w]
    torch.testing.assert_close(nhwc.to_map(out4, SIZE, conv), out4, rtol=0, atol=0)


def test_grid_errors_name_the_problem():
    assert grid(24, (32, 48)) == (4, 6) and grid(64, (64, 64)) == (8, 8)
    with pytest.raises(ConfigError, match="do not tile"):
        grid(23, (32, 48))
    with pytest.raises(ConfigError, match="prefix_tokens"):
        TokenLayout(prefix_tokens=1).to_map(torch.randn(1, 26, 4), SIZE)  # 2 prefix really
    with pytest.raises(ConfigError, match="TokenLayout"):
        set_token_layout(nn.Linear(2, 2), 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_grad_cam_matches_pytorch_grad_cam(kind):
    model, x = build(kind), images()
    ours = pgc_pipeline(layer_map("grad_cam", model, x, LAYERS[kind]), SIZE)
    ref = pgc_run("GradCAM", model, LAYERS[kind], x, kind)
    assert ref.shape == (4, *SIZE)
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("name,peer", [("xgrad_cam", "XGradCAM"), ("layer_cam", "LayerCAM")])
@pytest.mark.parametrize("kind", kinds("vit", "swin"))
def test_gradient_cams_match_pytorch_grad_cam(kind, name, peer):
    model, x = build(kind), images()
    ours = pgc_pipeline(layer_map(name, model, x, LAYERS[kind]), SIZE)
    ref = pgc_run(peer, model, LAYERS[kind], x, kind)
    assert ref.shape == (4, *SIZE)
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("kind", kinds("vit", "swin"))
def test_grad_cam_pp_matches_pytorch_grad_cam(kind):
    # As for CNNs (test_methods_cam.py): with logits scaled up, pytorch-grad-cam's 1e-6
    # in the denominator of Eq. 19 is negligible and the two agree. A random ViT's
    # gradients at norm1 are small: 1e3 leaves a 2.4e-3 difference, 1e5 leaves 6e-7.
    scaled = Scaled(build(kind), 1e5)
    x, layer = images(), "inner." + LAYERS[kind]
    ours = pgc_pipeline(layer_map("grad_cam_pp", scaled, x, layer), SIZE)
    ref = pgc_run("GradCAMPlusPlus", scaled, layer, x, kind)
    assert (ours - ref).abs().max() < 1e-4


@pytest.mark.parametrize("kind", kinds("vit_registers"))
def test_score_cam_channel_softmax_matches_pytorch_grad_cam(kind, monkeypatch):
    # pytorch-grad-cam upsamples Score-CAM masks with align_corners=True; swapped for
    # the authors' (and our) align_corners=False, as in test_methods_cam.py.
    class Up:
        def __init__(self, size):
            self.size = size

        def __call__(self, t: Tensor) -> Tensor:
            return F.interpolate(t, size=self.size, mode="bilinear", align_corners=False)

    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", Up)
    # In float64: a random transformer's masked inputs score nearly alike, so the channel
    # softmax weights are close to uniform and min-max normalisation magnifies float32
    # rounding of differently batched forwards to ~2e-5.
    model, x = build(kind).double(), images(2).double()
    t = TARGET[:2]
    lm = layer_map("score_cam", model, x, LAYERS[kind], t, chunk=16, weighting="channel_softmax")
    ref = pgc_run("ScoreCAM", model, LAYERS[kind], x, kind, t)
    assert (pgc_normalise(F.interpolate(pgc_normalise(lm)[:, None], size=SIZE, mode="bilinear",
                                        align_corners=False)[:, 0]) - ref).abs().max() < 1e-5


def naive_ablation_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str,
                       prefix: int, channels_last: bool) -> Tensor:
    """Desai & Ramaswamy Eq. 2-3 one channel at a time on the token tensor itself: zero
    channel k of every patch token (prefix tokens untouched), re-run, relative drop."""
    module = model.get_submodule(layer)
    with torch.no_grad():
        feats = []
        h = module.register_forward_hook(lambda m, i, o: feats.append(o.clone()))
        y = model(x).gather(1, target[:, None])[:, 0]
        h.remove()
        a = feats[0]
        a_map = a.permute(0, 3, 1, 2) if channels_last else \
            a[:, prefix:].reshape(len(x), SIZE[0] // 8, SIZE[1] // 8, -1).permute(0, 3, 1, 2)
        w = torch.zeros(a_map.shape[:2])
        for k in range(a_map.shape[1]):
            def zero(m, i, o, k=k):
                o = o.clone()
                if channels_last:
                    o[..., k] = 0
                else:
                    o[:, prefix:, k] = 0
                return o
            h = module.register_forward_hook(zero)
            yk = model(x).gather(1, target[:, None])[:, 0]
            h.remove()
            w[:, k] = (y - yk) / y
    return (w[:, :, None, None] * a_map).sum(1).clamp(min=0)


@pytest.mark.parametrize("kind", ["deit_distilled", pytest.param("swin", marks=SLOW)])
def test_ablation_cam_edits_the_grid_and_keeps_prefix_tokens(kind):
    model, x = build(kind), images(2)
    t = TARGET[:2]
    ours = layer_map("ablation_cam", model, x, LAYERS[kind], t, chunk=64)
    ref = naive_ablation_cam(model, x, t, LAYERS[kind], KINDS[kind], kind == "swin")
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * ref.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["guided_grad_cam", "counterfactual_grad_cam"])
def test_other_cam_methods_run_on_a_vit(name):
    model, x = build("vit"), images(2)
    out = get(name).fn(model, x, TARGET[:2], layer=LAYERS["vit"])
    assert out.shape == (2, *SIZE) and torch.isfinite(out).all()


def test_cam_refuses_a_class_token_vit_and_is_grad_cam_on_swins_final_norm():
    with pytest.raises(ConfigError, match="class/distillation/register"):
        get("cam").fn(build("vit"), images(2), TARGET[:2], layer=LAYERS["vit"])
    # Swin: final norm -> average over positions -> head.fc, so CAM applies exactly and
    # ReLU(CAM) / (h*w) is Grad-CAM (as on a GAP CNN).
    swin, x = build("swin"), images()
    cam = importlib.import_module("faithbench.methods.cam").layer_map(swin, x, TARGET, "norm")
    gc = importlib.import_module("faithbench.methods.grad_cam").layer_map(swin, x, TARGET, "norm")
    assert cam.shape == (4, 4, 6)
    torch.testing.assert_close(cam.clamp(min=0) / 24, gc, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["saliency", *(pytest.param(n, marks=SLOW) for n in (
    "gradient_x_input", "integrated_gradients", "smooth_grad"))])
@pytest.mark.parametrize("kind", ["vit", "swin"])
def test_gradient_methods_run_on_transformers(kind, name):
    model, x = build(kind), images(2)
    params = {"n_steps": 4} if name == "integrated_gradients" else \
        {"n_samples": 3, "seed": 0} if name == "smooth_grad" else {}
    out = get(name).fn(model, x, TARGET[:2], **params)
    assert out.shape == (2, *SIZE) and torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("kind", ["deit_distilled", "swin"])
def test_pytorch_grad_cam_adapter_gets_the_token_layout(kind):
    model, x = build(kind), images(2)
    ours = get("pytorch_grad_cam").fn(model, x, TARGET[:2], cam="GradCAM", layer=LAYERS[kind])
    ref = pgc_run("GradCAM", model, LAYERS[kind], x, kind, TARGET[:2])
    assert (ours - ref).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["cam", "excitation_backprop", "contrastive_excitation_backprop"])
def test_cnn_only_methods_refuse_a_vit_before_running(name, tiny_vit):
    """cam (no pooled linear head on a class-token model) and excitation backprop (rules for
    convolution / linear / pooling / ReLU only) are flagged for CNNs; the runner's check
    and a direct call both give a ConfigError that names the reason."""
    from faithbench import methods

    entry = methods.get(name)
    assert entry.info.models == "cnn"
    with pytest.raises(ConfigError, match="class token|transformer"):
        entry.info.check_model(tiny_vit)
    x, target = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    with pytest.raises(ConfigError, match="class token|transformer"):
        entry.fn(tiny_vit, x, target, layer="blocks.2.norm1")


def test_cnn_only_methods_accept_a_cnn(tiny_cnn):
    from faithbench import methods

    for name in ("cam", "excitation_backprop", "contrastive_excitation_backprop"):
        methods.get(name).info.check_model(tiny_cnn)  # no error
