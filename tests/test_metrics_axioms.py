"""Completeness, non-sensitivity, effective complexity and input invariance against
Quantus 0.6 (one-channel input, where Quantus's features are pixels) and against naive
loops of the papers on RGB, non-square input with per-sample targets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.methods._baselines import make_baseline
from faithbench.methods import get as method
from faithbench.metrics import get
from faithbench.metrics.input_invariance import shifted_model

completeness = get("completeness").fn
non_sensitivity = get("non_sensitivity").fn
effective_complexity = get("effective_complexity").fn
input_invariance = get("input_invariance").fn


def cnn(channels: int = 3, classes: int = 3, padding: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=padding), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, classes)).eval()


class LeftHalf(nn.Module):
    """A classifier that reads only the left ``cols`` columns: the others have no effect."""

    def __init__(self, channels: int, cols: int):
        super().__init__()
        self.cols = cols
        self.net = cnn(channels)

    def forward(self, x):
        return self.net(x[..., :self.cols])


def quantus(name: str, **kw):
    q = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    return getattr(q, name)(disable_warnings=True, **kw)


def sparse_maps(b: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    """Random signed maps with about half the pixels exactly zero, [B,1,H,W]."""
    rs = np.random.RandomState(seed)
    a = rs.randn(b, 1, h, w).astype(np.float32)
    return a * (rs.rand(b, 1, h, w) < 0.5)


TARGETS = np.array([0, 2, 1])


# completeness

def test_completeness_matches_quantus_delta_and_gap():
    model = cnn(1)
    x = np.random.RandomState(0).randn(3, 1, 6, 9).astype(np.float32)
    a = sparse_maps(3, 6, 9)
    deltas = []
    ref = quantus("Completeness", abs=False, normalise=False, perturb_baseline=0.0,
                  output_func=lambda d: deltas.append(d) or d)(
        model=model, x_batch=x, y_batch=TARGETS, a_batch=a, device="cpu")
    ours = completeness(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]),
                        torch.from_numpy(TARGETS))
    assert np.allclose(ours["completeness_delta"].numpy(), deltas[0], atol=1e-5)
    gap = np.abs(a.reshape(3, -1).sum(1) - deltas[0])
    assert np.allclose(ours["completeness_gap"].numpy(), gap, atol=1e-5)
    assert np.allclose(ours["completeness"].numpy(), gap / np.abs(deltas[0]), rtol=1e-4)
    assert not any(ref)  # Quantus asks for exact float equality: a random map never has it


def test_completeness_holds_for_gradient_times_input_of_a_linear_model():
    """A linear model, zero baseline: gradient x input sums to f(x) - f(0) exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 7, 3))
    x, target = torch.randn(3, 3, 4, 7), torch.tensor([2, 0, 1])
    e = (model[1].weight[target].view(3, 3, 4, 7) * x).sum(1).detach()
    out = completeness(model, x, e, target)
    assert out["completeness"].max() < 1e-5
    assert completeness(model, x, 2 * e, target)["completeness"].min() > 0.5


def test_completeness_of_integrated_gradients_with_its_baseline():
    model = cnn(3)
    x, target = torch.randn(3, 3, 8, 5), torch.tensor([1, 0, 2])
    e = method("integrated_gradients").fn(model, x, target, baseline="blur", n_steps=64)
    good = completeness(model, x, e, target, baseline="blur")["completeness"]
    wrong = completeness(model, x, e, target, baseline="zero")["completeness"]
    assert good.max() < 0.02 and wrong.min() > good.max()


def test_completeness_naive_on_constant_and_nan_maps():
    model = cnn(3)
    x, target = torch.randn(2, 3, 5, 6), torch.tensor([1, 2])
    h = torch.full((2, 5, 6), 0.25)
    h[1, 0, 0] = float("nan")
    out = completeness(model, x, h, target, baseline=0.5, activation="softmax")
    with torch.no_grad():
        p = model(x).softmax(1)[0, 1] - model(make_baseline(x, 0.5)).softmax(1)[0, 1]
    assert out["completeness_gap"][0].item() == pytest.approx(abs(0.25 * 30 - p.item()), abs=1e-5)
    assert all(torch.isnan(v[1]) for v in out.values())


# non-sensitivity

def test_non_sensitivity_matches_quantus_one_channel():
    model = LeftHalf(1, cols=5).eval()
    x = np.random.RandomState(0).randn(3, 1, 6, 9).astype(np.float32)
    a = sparse_maps(3, 6, 9)
    ref = quantus("NonSensitivity", abs=True, normalise=True, perturb_baseline=0.0,
                  features_in_step=1, eps=1e-5)(
        model=model, x_batch=x, y_batch=TARGETS, a_batch=a, device="cpu", softmax=True)
    ours = non_sensitivity(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]),
                           torch.from_numpy(TARGETS), chunk=17, activation="softmax")
    assert ours["non_sensitivity"].tolist() == [float(r) for r in ref]
    assert 0 < min(ref)


def naive_non_sensitivity(model, x, h, target, patch, eps, tol):
    """The paper's definition, tile by tile, one forward per tile."""
    out = []
    for i in range(x.shape[0]):
        with torch.no_grad():
            f = model(x[i:i + 1])[0, target[i]]
        a = h[i].abs()
        count = 0
        for r in range(0, x.shape[2], patch):
            for c in range(0, x.shape[3], patch):
                z = x[i:i + 1].clone()
                z[..., r:r + patch, c:c + patch] = 0
                with torch.no_grad():
                    same = abs(model(z)[0, target[i]] - f) < tol
                zero = bool((a[r:r + patch, c:c + patch] <= eps * a.max()).all())
                count += int(same != zero)
        out.append(count)
    return out


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_non_sensitivity_naive_loop_rgb_patches(patch):
    model = LeftHalf(3, cols=4).eval()
    x, target = torch.randn(3, 3, 5, 7), torch.tensor([2, 0, 1])
    h = torch.from_numpy(sparse_maps(3, 5, 7)[:, 0])
    h[2] = 1.0  # constant map: every tile relevant
    ours = non_sensitivity(model, x, h, target, patch=patch, chunk=5, activation="logit")
    ref = naive_non_sensitivity(model, x, h, target, patch, 1e-5, 1e-5)
    assert ours["non_sensitivity"].tolist() == ref
    n = -(-5 // patch) * -(-7 // patch)
    assert torch.allclose(ours["non_sensitivity_fraction"], torch.tensor(ref) / n)


# effective complexity

def test_effective_complexity_matches_quantus_with_ties_and_zero_maps():
    model = cnn(1)
    x = np.random.RandomState(0).randn(4, 1, 6, 9).astype(np.float32)
    a = np.concatenate([sparse_maps(2, 6, 9), np.zeros((1, 1, 6, 9), np.float32),
                        np.full((1, 1, 6, 9), -2.0, np.float32)])
    a[0, 0, 0, :3] = 1e-7  # below eps of the peak: not counted
    ref = quantus("EffectiveComplexity", abs=True, normalise=True, eps=1e-5)(
        model=model, x_batch=x, y_batch=np.array([0, 1, 2, 0]), a_batch=a, device="cpu")
    ours = effective_complexity(None, None, torch.from_numpy(a[:, 0]), None)
    assert ours["effective_complexity"].tolist() == [float(r) for r in ref]
    assert ours["effective_complexity"][2:].tolist() == [0.0, 54.0]
    assert ours["effective_complexity_fraction"][3].item() == 1.0


# input invariance

def gradient(model_default):
    """Plain gradient of the target logit, summed over channels: input invariant."""
    def explain(x, target, model=None, times_input=False):
        m = model if model is not None else model_default
        z = x.clone().requires_grad_(True)
        m(z).gather(1, target.view(-1, 1)).sum().backward()
        g = z.grad * z if times_input else z.grad
        return g.sum(1).detach()
    return explain


def same_padding_conv() -> nn.Module:
    """timm's Conv2dSame (efficientnet_lite0's stem): zero padding added inside forward."""
    return pytest.importorskip("timm.layers").Conv2dSame(3, 4, 3, stride=2)


@pytest.mark.parametrize("make", [
    lambda: cnn(3, padding=1),
    lambda: cnn(3, padding=0),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 5, 4), nn.ReLU(), nn.Linear(4, 3)),
    lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=2, bias=False), nn.Flatten(), nn.LazyLinear(3)),
    lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                          nn.LazyLinear(3)),
    lambda: nn.Sequential(same_padding_conv(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)),
])
def test_shifted_model_is_the_same_function(make):
    torch.manual_seed(0)
    model, x = make(), torch.randn(2, 3, 6, 5)
    ref = model(x)
    m = shifted_model(model, x, -1.5)
    assert torch.allclose(m(x - 1.5), ref, atol=1e-5)
    assert torch.equal(model(x), ref)  # the original is untouched


@pytest.mark.parametrize("times_input", [False, True])
def test_input_invariance_matches_quantus(times_input):
    model = cnn(3, padding=0)  # Quantus's bias update is exact only without padding
    x = np.random.RandomState(0).randn(3, 3, 6, 9).astype(np.float32)
    explain = gradient(model)

    def quantus_explain(model, inputs, targets, **kw):
        e = explain(torch.as_tensor(inputs), torch.as_tensor(targets), model, times_input)
        return e[:, None].numpy()

    xt, yt = torch.from_numpy(x), torch.from_numpy(TARGETS)
    a = explain(xt, yt, None, times_input)
    ref = quantus("InputInvariance", input_shift=-1)(
        model=model, x_batch=x, y_batch=TARGETS, a_batch=a[:, None].numpy(), device="cpu",
        explain_func=quantus_explain)
    ours = input_invariance(model, xt, a, yt, explain=lambda z, t, model=None:
                            explain(z, t, model, times_input))
    assert ours["input_invariance_holds"].tolist() == [float(r) for r in ref]
    assert all(ref) != times_input  # gradient is invariant, gradient x input is not
    assert (ours["input_invariance"] < 1e-5).all() != times_input


def test_input_invariance_errors_name_the_layer():
    model = nn.Sequential(nn.BatchNorm2d(3), cnn(3)).eval()
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(ConfigError, match="BatchNorm2d"):
        shifted_model(model, x, -1.0)
    with pytest.raises(ConfigError, match="nope"):
        shifted_model(model, x, -1.0, layer="nope")
    m = shifted_model(model, x, -1.0, layer="1.0")  # the user names the layer to adjust
    assert m[1][0].bias is not None


def test_quantus_shifted_model_differs_with_a_padded_first_layer():
    """The difference docs/metrics.md records: Quantus sets the bias from the smallest
    output of a constant input (a zero-padded border value), so its model is another
    function; ours is the same function."""
    pytest.importorskip("quantus")
    from quantus.helpers.model.pytorch_model import PyTorchModel

    model, x = cnn(3, padding=1), torch.randn(2, 3, 6, 9)
    theirs = PyTorchModel(model, channel_first=True).add_mean_shift_to_first_layer(-1, (1, 3, 6, 9))
    with torch.no_grad():
        assert (theirs(x - 1) - model(x)).abs().max() > 1e-2
        assert (shifted_model(model, x, -1.0)(x - 1) - model(x)).abs().max() < 1e-5
