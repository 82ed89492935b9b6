"""Excitation backprop, contrastive excitation backprop and extremal perturbation against
TorchRay's own functions (when the ``torchray`` package is installed) and, always,
against per-sample transcriptions written here: dense layer matrices for the excitation
rules, per-pixel loops for the smooth mask and the perturbation.

Tolerances: the reference computations are float32 in a different order (dense
Jacobians, TorchRay's per-sample autograd), so maps agree to rounding, 1e-5 of their
largest value; extremal perturbation compounds rounding over its SGD steps, 1e-4.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.methods._extremal import SmoothMask, area_reference, perturb, pyramid

EB = get("excitation_backprop").fn
CEB = get("contrastive_excitation_backprop").fn
EP = get("extremal_perturbation").fn


def close(a: Tensor, b: Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    scale = b.abs().max().clamp(min=1e-12)
    assert float((a - b).abs().max() / scale) < tol, float((a - b).abs().max() / scale)


def small_net() -> nn.Sequential:
    """conv-relu-maxpool-conv-BN-relu-avgpool-conv-relu-GAP-linear-relu-linear, seeded,
    BN with non-trivial statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 5),
    ).eval()
    with torch.no_grad():
        net[4].running_mean.uniform_(-0.2, 0.2)
        net[4].running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 12, 20, generator=g), torch.tensor([0, 3, 4])


# --- excitation backprop: a dense per-sample transcription ------------------------------

def _excite_dense(layer: nn.Module, a: Tensor, p: Tensor, negate: bool = False) -> Tensor:
    """Eq. 7 with the layer as a dense matrix: p_in = a * A+^T (p / (A+ a)), where A+ is
    the layer with its positive (or, negated, the negative's positive) weights, no bias."""
    pos = copy.deepcopy(layer)
    with torch.no_grad():
        pos.weight.copy_(((-1.0 if negate else 1.0) * pos.weight).clamp(min=0))
        pos.bias.zero_()
    a1 = a[None]
    m = jacobian(lambda z: pos(z), a1).reshape(pos(a1).numel(), a.numel())
    z = m @ a.flatten()
    return a * (m.T @ (p.flatten() / (z + 1e-20))).reshape(a.shape)


def walk(net: nn.Sequential, acts: list[Tensor], p: Tensor, start: int, stop: int,
         negate: int | None = None) -> Tensor:
    """From the signal ``p`` at the output of module ``start``, down module by module to
    the output of module ``stop``: weighted layers and pools by Eq. 7 (the ``negate``-th
    with negated weights), ReLU and max-pool by their Jacobian, BN passed through."""
    for i in range(start, stop, -1):
        m, a = net[i], acts[i]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            p = _excite_dense(m, a, p, negate=i == negate)
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            j = jacobian(lambda z: m(z[None])[0], a).reshape(-1, a.numel())
            p = a * (j.T @ (p.flatten() / (j @ a.flatten() + 1e-20))).reshape(a.shape)
        elif isinstance(m, (nn.ReLU, nn.MaxPool2d)):
            j = jacobian(lambda z: m(z[None].clone())[0], a).reshape(-1, a.numel())
            p = (j.T @ p.flatten()).reshape(a.shape)
        elif isinstance(m, nn.Flatten):
            p = p.reshape(a.shape)
    return p


def excitation_dense(net: nn.Sequential, x: Tensor, target: int, read: int,
                     contrast: int | None = None) -> Tensor:
    """The signal at the output of module ``read`` of ``net`` for one image [C,h,w], from
    a one-hot at the logits. With ``contrast``, the signal at the output of module
    ``contrast`` from the negated last layer is subtracted there."""
    acts = [x]  # acts[i]: the input of module i
    with torch.no_grad():
        for m in net:
            acts.append(m(acts[-1].clone()[None])[0])
    top = torch.zeros(net[-1].out_features)
    top[target] = 1.0
    last = len(net) - 1
    if contrast is None:
        return walk(net, acts, top, last, read)
    delta = walk(net, acts, top, last, contrast) - walk(net, acts, top, last, contrast, negate=last)
    return walk(net, acts, delta, contrast, read)


def _upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    return nn.functional.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def test_excitation_backprop_matches_a_dense_transcription(batch):
    net, (x, t) = small_net(), batch
    out = EB(net, x, t, layer="3")
    ref = torch.stack([_upsample(excitation_dense(net, x[i], int(t[i]), 3).sum(0), x.shape[-2:])
                       for i in range(3)])
    close(out, ref)
    assert out.dtype == torch.float32 and out.shape == (3, 12, 20)


def test_contrastive_excitation_backprop_matches_a_dense_transcription(batch):
    net, (x, t) = small_net(), batch
    out = CEB(net, x, t, layer="3", contrast_layer="12")  # the ReLU after the first Linear
    ref = torch.stack([_upsample(excitation_dense(net, x[i], int(t[i]), 3, contrast=12).sum(0)
                                 .clamp(min=0), x.shape[-2:]) for i in range(3)])
    close(out, ref)
    assert (out >= 0).all() and out.abs().max() > 0


def test_residual_sum_splits_in_proportion():
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
            self.head = nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            out = self.a(x)
            out += self.b(x)  # in place, as torchvision's blocks
            return self.head(out.mean((2, 3)))

    torch.manual_seed(0)
    net, x = Res().eval(), torch.rand(1, 2, 1, 1)
    with torch.no_grad():  # hand-checkable: everything positive
        for m in (net.a, net.b, net.head):
            m.weight.abs_()
            m.bias.zero_()
    sig = EB(net, x, torch.tensor([1]), layer="a")
    ya, yb = net.a(x), net.b(x)
    # the head's Eq. 7 gives p_out = y w / (w . y) at the sum y = ya + yb; a's share: ya / y.
    y = (ya + yb)[0, :, 0, 0]
    w = net.head.weight[1]
    expected = (ya[0, :, 0, 0] / y * (y * w / (w @ y))).sum()
    torch.testing.assert_close(sig[0, 0, 0], expected.detach())


def test_contrast_layer_defaults_to_the_classifier_input_and_is_checked(batch):
    net, (x, t) = small_net(), batch
    torch.testing.assert_close(CEB(net, x, t, layer="3"), CEB(net, x, t, layer="3", contrast_layer="12"))
    with pytest.raises(ConfigError, match="contrast_layer '1'.*after"):
        CEB(net, x, t, layer="3", contrast_layer="1")
    with pytest.raises(ConfigError, match="nope"):
        CEB(net, x, t, layer="3", contrast_layer="nope")


# --- against TorchRay -------------------------------------------------------------------

def test_excitation_backprop_matches_torchray(batch):
    tr = pytest.importorskip("torchray.attribution.excitation_backprop",
                             reason="TorchRay (pip install torchray) is the reference")
    net, (x, t) = small_net(), batch
    ref_net = copy.deepcopy(net)  # TorchRay switches its parameters' requires_grad off
    ref = torch.cat([tr.excitation_backprop(ref_net, x[i:i + 1], int(t[i]), saliency_layer="3",
                                            resize=True) for i in range(3)])[:, 0]
    close(EB(net, x, t, layer="3"), ref)
    ref = torch.cat([tr.contrastive_excitation_backprop(
        ref_net, x[i:i + 1], int(t[i]), saliency_layer="3", contrast_layer="12", resize=True)
        for i in range(3)])[:, 0]
    close(CEB(net, x, t, layer="3", contrast_layer="12"), ref)


def test_excitation_backprop_on_a_resnet_matches_torchray(tiny_resnet):
    tr = pytest.importorskip("torchray.attribution.excitation_backprop",
                             reason="TorchRay (pip install torchray) is the reference")
    x, t = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2)), torch.tensor([1, 4])
    ref_net = tr.update_resnet(copy.deepcopy(tiny_resnet))  # its EltwiseSum skip connections
    ref = torch.cat([tr.excitation_backprop(ref_net, x[i:i + 1], int(t[i]), saliency_layer="layer3",
                                            resize=True) for i in range(2)])[:, 0]
    close(EB(tiny_resnet, x, t, layer="layer3"), ref)
    ref = torch.cat([tr.contrastive_excitation_backprop(
        ref_net, x[i:i + 1], int(t[i]), saliency_layer="layer3", contrast_layer="avgpool",
        resize=True) for i in range(2)])[:, 0]
    close(CEB(tiny_resnet, x, t, layer="layer3", contrast_layer="avgpool"), ref)


EP_CASES = [
    {},
    {"variant": "dual", "reward": "contrastive", "perturbation": "fade", "jitter": False},
    {"variant": "delete"},
]


@pytest.mark.parametrize("kw", EP_CASES)
def test_extremal_perturbation_matches_torchray(batch, kw):
    elp = pytest.importorskip("torchray.attribution.extremal_perturbation",
                              reason="TorchRay (pip install torchray) is the reference")
    net, (x, t) = small_net(), batch
    areas, smooth = [0.1, 0.3], 0.09
    out = EP(net, x, t, areas=areas, max_iter=12, step=3, sigma=6.0, smooth=smooth, chunk=4, **kw)
    reward = elp.contrastive_reward if kw.get("reward") == "contrastive" else elp.simple_reward
    refs = []
    for i in range(3):
        mask, _ = elp.extremal_perturbation(
            copy.deepcopy(net), x[i:i + 1], int(t[i]), areas=areas, max_iter=12, step=3, sigma=6,
            perturbation=kw.get("perturbation", "blur"), variant=kw.get("variant", "preserve"),
            jitter=kw.get("jitter", True), reward_func=reward, smooth=smooth)
        refs.append(mask.sum(0))  # the benchmark's saliency: the sum over areas
    close(out, torch.cat(refs), tol=1e-4)


# --- extremal perturbation: per-pixel transcriptions and invariances ---------------------

def test_smooth_mask_matches_a_per_pixel_transcription():
    size, step, sigma = (9, 13), 3, 4.0
    gen = SmoothMask(size, step, sigma, torch.device("cpu"))
    params = torch.rand(2, 1, *gen.shape_in, generator=torch.Generator().manual_seed(3))
    mask, full = gen(params)
    # Each full-mask pixel u: smooth max over grid points v (at sigma + step * v, v may lie
    # in the padding, where the parameter is 0) of k(|u - pos(v)| / sigma) * m_v.
    pad, rad = gen.padding, gen.radius
    n = 0
    for uy in range(full.shape[2]):
        for ux in range(full.shape[3]):
            cy, cx = uy // step, ux // step
            vals = []
            for ky in range(2 * rad + 1):
                for kx in range(2 * rad + 1):
                    vy, vx = cy + ky - pad, cx + kx - pad
                    inside = 0 <= vy < gen.shape_in[0] and 0 <= vx < gen.shape_in[1]
                    d = math.hypot(uy - (sigma + step * vy), ux - (sigma + step * vx)) / sigma
                    k = math.exp(-2 * max(d - 0.5, 0) ** 2)
                    vals.append(k * params[:, 0, vy, vx] if inside else torch.zeros(2))
            v = torch.stack(vals, 1)
            expected = (v * torch.softmax(20 * v, 1)).sum(1).clamp(0, 1)
            torch.testing.assert_close(full[:, 0, uy, ux], expected, atol=1e-6, rtol=1e-5)
            n += 1
    assert n > 0 and torch.equal(mask, full[:, :, 4:13, 4:17])


def test_perturbation_interpolates_pyramid_levels():
    x = torch.randn(1, 3, 5, 6)
    pyr = pyramid(x, 5, 3.0, "blur")
    assert torch.equal(pyr[0, -1], x[0])  # the top level is the input
    mask = torch.tensor([0.0, 0.3, 0.5, 1.0]).repeat(30)[:30].reshape(1, 1, 5, 6)
    out = perturb(pyr, mask)
    for i in range(5):
        for j in range(6):
            level = float(mask[0, 0, i, j]) * 4
            lo, frac = int(math.floor(level)), level - math.floor(level)
            hi = min(lo + 1, 4)
            expected = (1 - frac) * pyr[0, lo, :, i, j] + frac * pyr[0, hi, :, i, j]
            torch.testing.assert_close(out[0, :, i, j], expected)


def test_area_reference_by_hand():
    ref = area_reference(torch.tensor([0.25, 0.5], dtype=torch.float64), 8)
    assert ref.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]]


def test_extremal_perturbation_batched_equals_per_sample(batch):
    net, (x, t) = small_net(), batch
    kw = {"areas": [0.05, 0.2], "max_iter": 6, "step": 3, "sigma": 6.0}
    out = EP(net, x, t, chunk=6, **kw)
    loop = torch.cat([EP(net, x[i:i + 1], t[i:i + 1], chunk=1, **kw) for i in range(3)])
    close(out, loop, tol=1e-5)
    assert out.shape == (3, 12, 20) and (out >= 0).all() and (out <= 2).all()


def test_extremal_perturbation_rejects_bad_areas(batch):
    net, (x, t) = small_net(), batch
    with pytest.raises(ConfigError, match=r"areas\[\]=1.5 is out of range; valid: \(0, 1\)"):
        EP(net, x, t, areas=[0.1, 1.5], max_iter=1)


# --- the pointing benchmark's networks, as the presets run them -------------------------

def _pointing_networks():
    """(ours, TorchRay's) pairs of VGG16 / ResNet50 pointing networks with random weights:
    ours returns the log-sum-exp of the score map, TorchRay's the map itself (read with
    its ``get_pointing_gradient``); the ResNet's skips are TorchRay's ``EltwiseSum``."""
    from faithbench.models._fully_conv import FullyConvResNet, FullyConvVGG
    from faithbench.models.torchray import caffe_resnet50, caffe_vgg16
    from torchray.attribution.excitation_backprop import update_resnet

    torch.manual_seed(0)
    vgg = FullyConvVGG(caffe_vgg16(20)).eval()
    ref_vgg = copy.deepcopy(vgg)
    ref_vgg.forward = lambda x: ref_vgg.classifier(ref_vgg.features(x))
    res = FullyConvResNet(caffe_resnet50(20)).eval()
    ref_res = caffe_resnet50(20)
    ref_res.avgpool, ref_res.fc = nn.AvgPool2d(7, stride=1), nn.Conv2d(2048, 20, 1)
    ref_res.load_state_dict(res.state_dict())
    ref_res = update_resnet(ref_res.eval())

    def forward(x: Tensor) -> Tensor:
        r = ref_res
        x = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
        return r.fc(r.avgpool(x))

    ref_res.forward = forward
    return [(vgg, ref_vgg, "features.23", "classifier.4"), (res, ref_res, "layer3", "avgpool")]


@pytest.mark.slow
def test_pointing_networks_match_torchray_benchmark_calls():
    """TorchRay's benchmark calls (its layers, ``get_pointing_gradient``) on 224 x 256
    inputs (a 1 x 2 score map) against ours on the log-sum-exp logits the presets use.
    In float64: the contrastive difference cancels most of the signal, so float32 maps
    of two summation orders differ by ~1e-3 of their peak; and TorchRay's
    exp(s) / sum exp(s) is 0/0 where float32 exp(s) underflows (scores below ~-100 on
    random weights), where the log-sum-exp gradient stays finite."""
    pytest.importorskip("torchray", reason="TorchRay (pip install torchray) is the reference")
    from torchray.attribution.common import get_pointing_gradient
    from torchray.attribution.excitation_backprop import (contrastive_excitation_backprop,
                                                          excitation_backprop)

    x = torch.randn(2, 3, 224, 256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t = torch.tensor([3, 17])
    for ours, ref, layer, contrast in _pointing_networks():
        ours, ref = ours.double(), ref.double()
        ebp = torch.cat([excitation_backprop(ref, x[i:i + 1], int(t[i]), layer, resize=True,
                                             get_backward_gradient=get_pointing_gradient)
                         for i in range(2)])[:, 0]
        close(EB(ours, x, t, layer=layer), ebp.float(), tol=1e-5)
        cebp = torch.cat([contrastive_excitation_backprop(
            ref, x[i:i + 1], int(t[i]), saliency_layer=layer, contrast_layer=contrast, resize=True,
            get_backward_gradient=get_pointing_gradient) for i in range(2)])[:, 0]
        close(CEB(ours, x, t, layer=layer, contrast_layer=contrast), cebp.float(), tol=1e-5)


def test_in_place_residual_sum_without_rebinding_keeps_the_forward():
    """``out.add_(identity)`` used as a statement must still update ``out``."""
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 3, 1), nn.Linear(3, 4)

        def forward(self, x: Tensor) -> Tensor:
            out = self.conv(x)
            out.add_(x)
            return self.head(out.relu().mean((2, 3)))

    torch.manual_seed(0)
    net, x, t = Res().eval(), torch.rand(2, 3, 5, 6), torch.tensor([0, 3])
    from faithbench.methods._excitation import Rules, excitation_rules

    with torch.no_grad(), excitation_rules(Rules()):
        inside = net(x)
    torch.testing.assert_close(inside, net(x))
    assert EB(net, x, t, layer="conv").isfinite().all()


@pytest.mark.parametrize("overrides, message", [
    (["method=extremal_perturbation", "method.areas=[]"],
     r"method 'extremal_perturbation': areas=\[\] must hold at least one value"),
    (["method=extremal_perturbation", "method.variant=preserv"],
     r"method 'extremal_perturbation': unknown variant 'preserv'\. Did you mean 'preserve'\?"),
])
def test_bad_settings_stop_before_any_run_opens(workdir, overrides, message):
    from mlflow.tracking import MlflowClient

    from faithbench.cli import compose
    from faithbench.run import run

    with pytest.raises(ConfigError, match=message):
        run(compose(overrides + ["dataset.limit=2", "device=cpu"]))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])
