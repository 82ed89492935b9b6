"""IROF against Quantus 0.6 (one-channel input: Quantus's IROF stops on RGB input) and
a naive loop over the same SLIC superpixels on RGB input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.metrics import get
from faithbench.metrics.irof import slic_segments
from faithbench.types import Batch

irof = get("irof").fn


def cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).eval()


def quantus_irof(monkeypatch, model, x, y, a):
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    if not hasattr(np, "trapz"):  # NumPy >= 2.4 removed np.trapz, which Quantus 0.6 calls
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    metric = quantus.IROF(perturb_baseline=0.0, normalise=False, abs=False, disable_warnings=True,
                          return_aggregate=False)
    return np.array(metric(model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu"))


def test_matches_quantus_one_channel(monkeypatch):
    model = cnn(1)
    x = np.random.RandomState(0).rand(3, 1, 16, 20).astype(np.float32)  # non-square
    a = np.random.RandomState(1).randn(3, 1, 16, 20).astype(np.float32)
    y = np.array([0, 2, 1])  # per-sample targets
    ref = quantus_irof(monkeypatch, model, x, y, a)
    out = irof(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), torch.from_numpy(y),
               substitute="zero", ties="stable")
    curve, xs = out["irof_curve"].double(), out["irof_curve_x"]
    for i in range(3):
        s = int(round(1 / xs[i, 1].item()))
        # Quantus: S - trapezoid of the relative scores after 1..S removals, step 1.
        assert ref[i] == pytest.approx(s - torch.trapezoid(curve[i, 1:s + 1]).item(), abs=1e-5)


def test_quantus_stops_on_rgb(monkeypatch):
    model = cnn()
    x = np.random.RandomState(0).rand(1, 3, 16, 20).astype(np.float32)
    a = np.random.RandomState(1).randn(1, 1, 16, 20).astype(np.float32)
    with pytest.raises(AssertionError, match="mask shape"):
        quantus_irof(monkeypatch, model, x, np.array([0]), a)


def test_naive_loop_rgb():
    model = cnn()
    g = torch.Generator().manual_seed(2)
    x, h = torch.rand(2, 3, 14, 18, generator=g), torch.randn(2, 14, 18, generator=g)
    t = torch.tensor([1, 0])
    out = irof(model, x, h, t, n_segments=20, ties="stable")
    seg = slic_segments(x, 20, 10.0)
    for i in range(2):
        f = lambda z: torch.softmax(model(z[None]), 1)[0, t[i]].item()  # noqa: E731
        labels = sorted(set(seg[i].flatten().tolist()))
        means = {s: h[i][seg[i] == s].mean().item() for s in labels}
        z, mean = x[i].clone(), x[i].mean((1, 2), keepdim=True)
        curve = [1.0]
        for s in sorted(labels, key=lambda s: -means[s]):
            z = torch.where(seg[i] == s, mean, z)
            curve.append(f(z) / f(x[i]))
        xs = np.linspace(0, 1, len(curve))
        assert out["irof"][i].item() == pytest.approx(1 - np.trapezoid(curve, xs), abs=1e-5)
        n = len(curve)
        assert np.allclose(out["irof_curve"][i, :n].numpy(), curve, atol=1e-5)
        assert torch.all(out["irof_curve"][i, n:] == out["irof_curve"][i, n - 1])


def test_constant_nan_maps_and_batch_invariance():
    model = cnn()
    g = torch.Generator().manual_seed(3)
    x, h = torch.rand(3, 3, 12, 10, generator=g), torch.randn(3, 12, 10, generator=g)
    h[0] = 0.0
    h[1, 0, 0] = float("nan")
    t = torch.tensor([2, 0, 1])
    batch = Batch(images=x, labels=t, ids=list("abc"), index=torch.tensor([0, 1, 2]))
    full = irof(model, x, h, t, batch, n_segments=10, seed=1, chunk=7)["irof"]
    assert torch.isfinite(full[[0, 2]]).all() and torch.isnan(full[1])
    for i in (0, 2):
        one = irof(model, x[i:i + 1], h[i:i + 1], t[i:i + 1],
                   Batch(images=x[i:i + 1], labels=t[i:i + 1], ids=["abc"[i]], index=torch.tensor([i])),
                   n_segments=10, seed=1)["irof"]
        assert one[0].item() == pytest.approx(full[i].item(), abs=1e-6)
