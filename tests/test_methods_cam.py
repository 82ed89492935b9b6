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
from torch import Tensor, nn

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


@pytest.mark.parametrize("name,peer", [("xgrad_cam", "XGradCAM"), ("layer_cam", "LayerCAM")])
@pytest.mark.parametrize("fixture,layer,size", CASES)
def test_gradient_cams_match_pytorch_grad_cam(request, fixture, layer, size, name, peer):
    model, x = inputs(request, fixture, size)
    ours = pgc_pipeline(layer_map(name, model, x, layer), size)
    ref = pgc_run(peer, model, layer, x)
    assert (ours - ref).abs().max() < 1e-5


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.factor


@pytest.mark.parametrize("fixture,layer,size", CASES)
def test_grad_cam_pp_matches_pytorch_grad_cam_up_to_its_epsilon(request, fixture, layer, size):
    # pytorch-grad-cam adds 1e-6 to the denominator 2g^2 + sum(A) g^3 of Eq. 19; the
    # paper does not, nor do we. Where per-position gradients are small (g^2 << 1e-6,
    # common for real networks) the epsilon dominates alpha. With logits scaled by 1e3
    # the gradients are 1e3 larger and the epsilon is negligible: then the two agree.
    model, x = inputs(request, fixture, size)
    scaled = Scaled(model, 1e3)
    ours = pgc_pipeline(layer_map("grad_cam_pp", scaled, x, "inner." + layer), size)
    ref = pgc_run("GradCAMPlusPlus", scaled, "inner." + layer, x)
    assert (ours - ref).abs().max() < 1e-4
    ours = pgc_pipeline(layer_map("grad_cam_pp", model, x, layer), size)
    ref = pgc_run("GradCAMPlusPlus", model, layer, x)
    assert (ours - ref).abs().max() > 1e-3


@pytest.fixture
def small_resnet_input():
    # 32x32 puts layer3 at 2x2: 256 channels x 1 image keeps Score-/Ablation-CAM cheap.
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def perturbation_cases(request, small_resnet_input):
    yield request.getfixturevalue("tiny_cnn"), torch.randn(4, 3, 32, 32), "features.5"
    yield request.getfixturevalue("tiny_resnet"), small_resnet_input, "layer3"


def align_corners_false(monkeypatch):
    # pytorch-grad-cam upsamples Score-CAM masks with nn.UpsamplingBilinear2d, i.e.
    # align_corners=True, unlike the authors' code (F.interpolate, align_corners=False)
    # and unlike its own cv2 resize of the final map. Swap it for the same call as ours.
    class Up:
        def __init__(self, size):
            self.size = size

        def __call__(self, t: Tensor) -> Tensor:
            return F.interpolate(t, size=self.size, mode="bilinear", align_corners=False)

    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", Up)


def test_score_cam_channel_softmax_matches_pytorch_grad_cam(request, small_resnet_input, monkeypatch):
    align_corners_false(monkeypatch)
    for model, x, layer in perturbation_cases(request, small_resnet_input):
        t = TARGET[: len(x)]
        lm = importlib.import_module("faithbench.methods.score_cam").layer_map(
            model, x, t, layer, chunk=50, weighting="channel_softmax")
        with pgc.ScoreCAM(model, [model.get_submodule(layer)]) as cam:
            ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(int(i)) for i in t]))
        assert (pgc_pipeline(lm, x.shape[-1]) - ref).abs().max() < 1e-5


def test_score_cam_default_is_the_authors_class_probability(tiny_cnn, images):
    # Naive loop of the authors' code: per channel, upsample, min-max scale, mask the
    # input, weight = softmax probability of the target class; skip constant maps.
    # Their code sums upsampled maps and applies the ReLU at input resolution; like the
    # rest of the CAM family (Grad-CAM Eq. 2, pytorch-grad-cam) we apply it at layer
    # resolution and then upsample, so the reference does the same.
    w = torch.zeros(4, 16)
    with torch.no_grad():
        feats = []
        h = tiny_cnn.features[5].register_forward_hook(lambda m, i, o: feats.append(o))
        tiny_cnn(images)
        h.remove()
        for i in range(4):
            for k in range(16):
                up = F.interpolate(feats[0][i : i + 1, k : k + 1], size=(32, 32), mode="bilinear",
                                   align_corners=False)
                if up.max() == up.min():
                    continue
                mask = (up - up.min()) / (up.max() - up.min())
                w[i, k] = tiny_cnn(images[i : i + 1] * mask).softmax(1)[0, TARGET[i]]
    ref = (w[:, :, None, None] * feats[0]).sum(1).clamp(min=0)
    ref = F.interpolate(ref[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = get("score_cam").fn(tiny_cnn, images, TARGET, layer="features.5", chunk=7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_ablation_cam_matches_pytorch_grad_cam(request, small_resnet_input):
    for model, x, layer in perturbation_cases(request, small_resnet_input):
        t = TARGET[: len(x)]
        lm = importlib.import_module("faithbench.methods.ablation_cam").layer_map(model, x, t, layer, chunk=50)
        with pgc.AblationCAM(model, [model.get_submodule(layer)]) as cam:
            ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(int(i)) for i in t]))
        # (y - y_k) / y cancels digits when a channel matters little: float32 noise.
        assert (pgc_pipeline(lm, x.shape[-1]) - ref).abs().max() < 1e-4


def naive_ablation_cam(model, x, target, module) -> Tensor:
    """Desai & Ramaswamy Eq. 2-3 one channel at a time: zero A_k, re-run, relative drop."""
    with torch.no_grad():
        feats = []
        h = module.register_forward_hook(lambda m, i, o: feats.append(o.clone()))
        y = model(x).gather(1, target[:, None])[:, 0]
        h.remove()
        a = feats[0]
        w = torch.zeros(a.shape[:2])
        for k in range(a.shape[1]):
            def zero(m, i, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o
            h = module.register_forward_hook(zero)
            yk = model(x).gather(1, target[:, None])[:, 0]
            h.remove()
            w[:, k] = (y - yk) / y
    return (w[:, :, None, None] * a).sum(1).clamp(min=0)


def test_ablation_cam_is_the_papers_channel_by_channel_loop(tiny_cnn, images):
    ours = importlib.import_module("faithbench.methods.ablation_cam").layer_map(
        tiny_cnn, images, TARGET, "features.5", chunk=5)
    ref = naive_ablation_cam(tiny_cnn, images, TARGET, tiny_cnn.features[5])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * ref.abs().max().item())


def test_ablation_cam_zeroes_channels_where_pytorch_grad_cam_does_not(tiny_resnet):
    # pytorch-grad-cam sets an ablated channel to 0 only if the whole activation
    # batch has minimum 0 (a ReLU output); otherwise to (current minimum - 1e7), and
    # that minimum falls further with each ablated copy in the batch. The paper sets
    # the channel to zero, as we do (checked against the loop above). At a BatchNorm
    # output (signed, added to the skip connection) the two differ.
    layer = "layer2.1.bn2"
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    t = TARGET[:1]
    lm = importlib.import_module("faithbench.methods.ablation_cam").layer_map(tiny_resnet, x, t, layer)
    with pgc.AblationCAM(tiny_resnet, [tiny_resnet.get_submodule(layer)]) as cam:
        ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(int(i)) for i in t]))
    assert (pgc_pipeline(lm, 32) - ref).abs().max() > 0.05


def test_cam_matches_torchcam(tiny_resnet):
    torchcam = pytest.importorskip("torchcam.methods")
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    with torchcam.CAM(tiny_resnet, "layer4", "fc") as extractor:
        ref = extractor(class_idx=TARGET.tolist(), scores=tiny_resnet(x), normalized=False)[0]
    ours = layer_map("cam", tiny_resnet, x, "layer4")
    assert (ours - ref).abs().max() < 1e-5 * ref.abs().max()


def test_cam_equals_grad_cam_on_a_gap_model(tiny_resnet):
    # For layer -> global average pooling -> linear, dy^c/dA^k_ij = w^c_k / (h*w), so
    # Grad-CAM's alpha_k = w^c_k / (h*w) and Grad-CAM = ReLU(CAM) / (h*w) (Selvaraju
    # et al., Sec. 3.1). ResNet's layer4 output is post-ReLU and feeds avgpool -> fc.
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    c = layer_map("cam", tiny_resnet, x, "layer4")
    g = layer_map("grad_cam", tiny_resnet, x, "layer4")
    assert g.shape == (4, 3, 3)
    torch.testing.assert_close(g, c.clamp(min=0) / 9, rtol=1e-5, atol=1e-6 * g.abs().max().item())
    assert (c < 0).any(), "CAM keeps its sign; the ReLU above is what Grad-CAM adds"


def test_counterfactual_grad_cam_is_grad_cam_of_the_negated_logits(tiny_cnn, images):
    ours = get("counterfactual_grad_cam").fn(tiny_cnn, images, TARGET, layer="features.5")
    ref = get("grad_cam").fn(Scaled(tiny_cnn, -1.0), images, TARGET, layer="inner.features.5")
    torch.testing.assert_close(ours, ref)
    plain = get("grad_cam").fn(tiny_cnn, images, TARGET, layer="features.5")
    assert not torch.allclose(ours, plain)


def test_cam_errors_name_the_problem(tiny_cnn, images):
    from faithbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown layer 'features.9'.*features.5"):
        get("grad_cam").fn(tiny_cnn, images, TARGET, layer="features.9")
    with pytest.raises(ConfigError, match="needs `layer`"):
        get("grad_cam").fn(tiny_cnn, images, TARGET, layer=None)
    with pytest.raises(ConfigError, match="not an nn.Linear"):
        get("cam").fn(tiny_cnn, images, TARGET, layer="features.5", classifier="pool")
    with pytest.raises(ConfigError, match="channels"):
        get("cam").fn(tiny_cnn, images, TARGET, layer="features.0")
