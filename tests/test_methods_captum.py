"""Reference tests against Captum: the gradient family, Grad-CAM, Guided Grad-CAM, occlusion.

Captum returns per-channel attributions [B,3,H,W]; each test applies the channel
reduction that the faithbench method documents before comparing.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def test_gradient_x_input_matches_captum(tiny_cnn, images):
    ref = captum_attr.InputXGradient(tiny_cnn).attribute(images, target=TARGET).sum(1)
    assert rel_err(run("gradient_x_input", tiny_cnn, images), ref) < 1e-6


@pytest.mark.parametrize("rule,baseline", [("gausslegendre", "zero"), ("riemann_left", 0.5),
                                           ("riemann_right", "zero"), ("riemann_middle", -0.2)])
def test_integrated_gradients_matches_captum(tiny_cnn, images, rule, baseline):
    ig = captum_attr.IntegratedGradients(tiny_cnn)
    ref = ig.attribute(images, baselines=baseline if baseline != "zero" else 0.0, target=TARGET,
                       n_steps=8, method=rule).sum(1)
    ours = run("integrated_gradients", tiny_cnn, images, baseline=baseline, n_steps=8, rule=rule,
               internal_batch_size=7)
    assert rel_err(ours, ref) < 1e-5


def test_integrated_gradients_trapezoid_differs_from_captum_by_its_step_sizes(tiny_cnn, images):
    # Captum's trapezoid rule puts n points on [0, 1] (spacing 1/(n-1)) but uses step
    # 1/n, so its weights sum to 1 - 1/n and every attribution shrinks by (n-1)/n. Ours
    # use the spacing 1/(n-1); documented in docs/methods.md.
    n = 20
    ref = captum_attr.IntegratedGradients(tiny_cnn).attribute(
        images, target=TARGET, n_steps=n, method="riemann_trapezoid").sum(1)
    ours = run("integrated_gradients", tiny_cnn, images, n_steps=n, rule="riemann_trapezoid")
    assert rel_err(ours, ref) > 0.04
    assert rel_err(ours, ref * n / (n - 1)) < 1e-5


@pytest.mark.parametrize("baseline", ["zero", "blur", "uniform", -0.3])
def test_integrated_gradients_completeness(tiny_cnn, images, baseline):
    # Axiom (Sundararajan et al., Prop. 1): sum_i IG_i = F(x) - F(x'). The channel-sum
    # reduction keeps it, so the [B,H,W] map sums to the logit difference.
    from faithbench.methods._baselines import make_baseline

    x, t = images[:2], TARGET[:2]
    ours = get("integrated_gradients").fn(tiny_cnn, x, t, baseline=baseline, n_steps=128,
                                          internal_batch_size=256, seed=3)
    base = make_baseline(x, baseline, 5.0, 3)
    with torch.no_grad():
        diff = (tiny_cnn(x) - tiny_cnn(base)).gather(1, t[:, None])[:, 0]
    err = (ours.sum((1, 2)) - diff).abs()
    assert (err <= 0.01 * diff.abs().max()).all(), (err, diff)


RELU_FORMS = {
    "module": lambda m, x: m.act(x),
    "module_inplace": lambda m, x: m.act_inplace(x),
    "F.relu": lambda m, x: F.relu(x),
    "F.relu_inplace": lambda m, x: F.relu(x, inplace=True),
    "F.relu_": lambda m, x: F.relu_(x),
    "torch.relu": lambda m, x: torch.relu(x),
    "torch.relu_": lambda m, x: torch.relu_(x),
    "Tensor.relu": lambda m, x: x.relu(),
    "Tensor.relu_": lambda m, x: x.relu_(),
    # Clipped ReLUs equal ReLU below 6; ReluForms' activations stay below 6 (asserted).
    "ReLU6": lambda m, x: m.act6(x),
    "ReLU6_inplace": lambda m, x: m.act6_inplace(x),
    "F.relu6": lambda m, x: F.relu6(x),
    "F.hardtanh_0_6": lambda m, x: F.hardtanh(x, 0.0, 6.0),
}


class ReluForms(nn.Module):
    """conv-relu-conv-relu-GAP-linear whose ReLUs are called in one of RELU_FORMS; with
    form "module" every ReLU is an nn.ReLU module, the form Captum's hooks need."""

    def __init__(self, form: str) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.c1, self.c2, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
        self.act, self.act_inplace, self.form = nn.ReLU(), nn.ReLU(inplace=True), form
        self.act6, self.act6_inplace = nn.ReLU6(), nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        relu = RELU_FORMS[self.form]
        a = self.c1(x)
        b = self.c2(relu(self, a.clone()))
        assert max(a.max(), b.max()) < 6
        return self.fc(relu(self, b).mean((2, 3)))


@pytest.mark.parametrize("form", list(RELU_FORMS))
@pytest.mark.parametrize("name,peer", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_modified_relu_rules_catch_every_relu_form(form, name, peer):
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    ref = getattr(captum_attr, peer)(ReluForms("module")).attribute(x, target=TARGET)
    ours = get(name).fn(ReluForms(form), x, TARGET, reduce="sum")
    assert rel_err(ours, ref.sum(1)) < 1e-6
    assert rel_err(ours, get("saliency").fn(ReluForms(form), x, TARGET, reduce="sum")) > 0.01
    assert rel_err(get(name).fn(ReluForms(form), x, TARGET), ref.abs().amax(1)) < 1e-6


@pytest.mark.parametrize("name,peer", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_modified_relu_rules_match_captum_on_resnet(tiny_resnet, resnet_images, name, peer):
    # torchvision's ResNet: nn.ReLU(inplace=True) modules, each called twice per block.
    ref = getattr(captum_attr, peer)(tiny_resnet).attribute(resnet_images, target=TARGET)
    assert rel_err(run(name, tiny_resnet, resnet_images), ref.abs().amax(1)) < 1e-6


class ModuleReluTwin(nn.Module):
    """TinyCNN with its functional output relu replaced by an nn.ReLU module."""

    def __init__(self, tiny: nn.Module) -> None:
        super().__init__()
        self.features, self.pool, self.fc, self.act = tiny.features, tiny.pool, tiny.fc, nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.act(self.features(x))).flatten(1))


@pytest.mark.parametrize("name,peer", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_modified_relu_rules_on_tiny_cnn_functional_relu(tiny_cnn, images, name, peer):
    # Captum hooks nn.ReLU modules only (its docstring says so), so on TinyCNN it misses
    # the functional relu and returns something else; on a twin that uses a module for
    # that relu it is a valid reference for our result on TinyCNN itself.
    ours = run(name, tiny_cnn, images)
    twin = getattr(captum_attr, peer)(ModuleReluTwin(tiny_cnn)).attribute(images, target=TARGET)
    assert rel_err(ours, twin.abs().amax(1)) < 1e-6
    missed = getattr(captum_attr, peer)(tiny_cnn).attribute(images, target=TARGET)
    assert rel_err(ours, missed.abs().amax(1)) > 0.1


@pytest.mark.parametrize("case", ["tiny", "resnet"])
def test_guided_grad_cam_matches_captum(request, case):
    # Captum interpolates the Grad-CAM map with "nearest" by default; ours is bilinear,
    # so ask Captum for bilinear. On TinyCNN Captum needs the module-ReLU twin (above).
    if case == "tiny":
        model, layer, x = request.getfixturevalue("tiny_cnn"), "features.5", request.getfixturevalue("images")
        peer_model = ModuleReluTwin(model)
    else:
        model, layer, x = request.getfixturevalue("tiny_resnet"), "layer3", request.getfixturevalue("resnet_images")
        peer_model = model
    ggc = captum_attr.GuidedGradCam(peer_model, peer_model.get_submodule(layer))
    ref = ggc.attribute(x, target=TARGET, interpolate_mode="bilinear")
    assert rel_err(run("guided_grad_cam", model, x, layer=layer), ref.abs().amax(1)) < 1e-5
    assert rel_err(run("guided_grad_cam", model, x, layer=layer, reduce="sum"), ref.sum(1)) < 1e-5
