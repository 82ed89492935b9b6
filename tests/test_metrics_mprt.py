"""smooth_mprt and efficient_mprt against Quantus 0.6 SmoothMPRT / EfficientMPRT on a
model whose re-initialisation is deterministic (so both randomise to the same weights),
a naive loop for the noise averaging, and numpy/scipy for the discrete entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.metrics import get
from faithbench.metrics.mprt import SMOOTH_STREAM, discrete_entropy
from faithbench.ops import generator

smprt, empr = get("smooth_mprt").fn, get("efficient_mprt").fn
H, W = 9, 13  # non-square


class DetConv(nn.Conv2d):
    """A convolution re-initialised to a fixed pattern, whatever the RNG."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            n = self.weight.numel()
            self.weight.copy_(torch.sin(torch.arange(n, dtype=torch.float32) * 1.7).view_as(self.weight))
            if self.bias is not None:
                self.bias.fill_(0.05)


class DetLinear(nn.Linear):
    def reset_parameters(self) -> None:
        with torch.no_grad():
            n = self.weight.numel()
            self.weight.copy_(torch.cos(torch.arange(n, dtype=torch.float32) * 0.3).view_as(self.weight))
            self.bias.fill_(-0.1)


def det_model():
    m = nn.Sequential(DetConv(3, 4, 3, padding=1), nn.ReLU(), DetConv(4, 4, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), DetLinear(4 * H * W, 3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def grad_x_input(x, target, model):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
    return (g * x).sum(1).detach()


def explain_for(model):
    def explain(x, target, model=model):
        return grad_x_input(x, target, model)
    return explain


def qexplain(model, inputs, targets, **kw):
    return grad_x_input(torch.as_tensor(inputs).float(), torch.as_tensor(targets).long(), model).numpy()[:, None]


def data(n=4, seed=1):
    x = torch.randn(n, 3, H, W, generator=torch.Generator().manual_seed(seed))
    return x, torch.arange(n) % 3  # per-sample targets


def gradient(x, target, model):
    """Quantus's "Gradient" (Captum Saliency, abs=False, summed over channels)."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
    return g.sum(1).detach()


def test_smooth_mprt_without_noise_matches_quantus_per_layer():
    quantus = pytest.importorskip("quantus")
    model = det_model()
    x, target = data()

    def explain(x, target, model=model):
        return gradient(x, target, model)

    h = explain(x, target)
    ours = smprt(model, x, h, target, explain=explain, n_samples=1)
    theirs = quantus.SmoothMPRT(nr_samples=1, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=h[:, None].numpy(),
        explain_func=qexplain, device="cpu")
    layers = [k for k in theirs if k != "original"]
    assert len(layers) == ours["smooth_mprt_curve"].shape[1] == 3
    ref = np.stack([np.asarray(theirs[k]) for k in layers], 1)
    assert np.abs(ours["smooth_mprt_curve"].numpy() - ref).max() < 1e-5
    assert np.abs(ours["smooth_mprt"].numpy() - ref.mean(1)).max() < 1e-5
    # Documented: Quantus's SmoothMPRT explains with its own quantus.explain (the plain
    # Gradient), whatever explain_func it is given: the maps above are that Gradient.
    # Documented: Quantus's average keeps its "original" entry (it skips a key "orig").
    q_avg = quantus.SmoothMPRT(nr_samples=1, return_average_correlation=True, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=h[:, None].numpy(),
        explain_func=qexplain, device="cpu")
    with_original = np.concatenate([np.asarray(theirs["original"])[:, None], ref], 1).mean(1)
    assert np.abs(np.asarray(q_avg) - with_original).max() < 1e-5


def test_smooth_mprt_noise_average_is_a_naive_loop():
    from scipy.stats import spearmanr

    model = det_model()
    x, target = data(n=3, seed=2)
    explain = explain_for(model)
    h = explain(x, target)
    out = smprt(model, x, h, target, explain=explain, n_samples=3, noise=0.2, seed=5,
                order="top_down", absolute=False)
    ranged = (x.amax((1, 2, 3)) - x.amin((1, 2, 3))).view(-1, 1, 1, 1) * 0.2

    def smooth(m, first=None):
        total = grad_x_input(x, target, m) if first is None else first
        for j in (1, 2):
            eps = torch.stack([torch.randn(3, H, W, generator=generator(5, i, "cpu", SMOOTH_STREAM + j))
                               for i in range(3)])
            total = total + grad_x_input(x + eps * ranged, target, m)
        return total / 3

    ref = smooth(model, first=h)
    m = det_model()
    for step, layer in enumerate(["5", "2", "0"]):  # top-down
        dict(m.named_modules())[layer].reset_parameters()
        hr = smooth(m)
        for i in range(3):
            rho = spearmanr(hr[i].flatten().numpy(), ref[i].flatten().numpy())[0]
            assert out["smooth_mprt_curve"][i, step].item() == pytest.approx(rho, abs=1e-5)


def test_discrete_entropy_is_numpy_histogram_and_scipy():
    from scipy.stats import entropy

    maps = torch.randn(5, H, W, generator=torch.Generator().manual_seed(3)) ** 3
    maps[4] = 2.0
    ours = discrete_entropy(maps, 20)
    for i in range(5):
        ref = entropy(np.histogram(maps[i].double().numpy(), bins=20)[0])
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)
    assert ours[4].item() == 0.0


def test_efficient_mprt_matches_quantus():
    quantus = pytest.importorskip("quantus")
    model = det_model()
    x, target = data(n=5, seed=4)
    explain = explain_for(model)
    h = explain(x, target)
    ours = empr(model, x, h, target, explain=explain)
    theirs = quantus.EfficientMPRT(disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=h[:, None].numpy(),
        explain_func=qexplain, device="cpu")
    assert np.abs(ours["efficient_mprt"].numpy() - np.asarray(theirs)).max() < 1e-6
    assert torch.isfinite(ours["efficient_mprt"]).all()


def test_efficient_mprt_constant_map_is_nan_with_finite_entropies():
    model = det_model()
    x, target = data(n=2, seed=6)
    h = torch.stack([torch.zeros(H, W), torch.ones(H, W)])
    out = empr(model, x, h, target, explain=explain_for(model))
    assert torch.isnan(out["efficient_mprt"]).all()
    assert out["efficient_mprt_entropy"].tolist() == [0.0, 0.0]
    assert (out["efficient_mprt_random_entropy"] > 0).all()
