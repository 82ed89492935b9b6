"""Monotonicity against a transcription of AIX360's ``monotonicity_metric`` (Quantus's
``Monotonicity`` never restores a pixel, see docs/metrics.md), and monotonicity
correlation against Quantus 0.6 on its own random values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.metrics import get
from faithbench.metrics.monotonicity import variance_correlation
from faithbench.types import Batch

monotonicity = get("monotonicity").fn
mono_corr = get("monotonicity_correlation").fn


def cnn(channels: int = 3, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, classes)).eval()


def aix360_monotonicity(model, x, coefs, base, target, group):
    """AIX360's loop (features restored one at a time in ascending order of the
    coefficients, the target's probability after each), with ``group`` pixels per step
    and whole pixels (all channels) as features."""
    x_copy = base.clone()
    order = np.argsort(coefs.flatten().numpy(), kind="stable")
    probs = []
    for start in range(0, order.size, group):
        pix = torch.from_numpy(order[start:start + group].copy())
        x_copy.view(x.shape[0], -1)[:, pix] = x.view(x.shape[0], -1)[:, pix]
        probs.append(torch.softmax(model(x_copy[None]), 1)[0, target].item())
    return bool(np.all(np.diff(probs) >= 0)), probs


def test_monotonicity_matches_aix360_loop():
    model = cnn()
    g = torch.Generator().manual_seed(2)
    x, h = torch.randn(6, 3, 5, 7, generator=g), torch.randn(6, 5, 7, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    out = monotonicity(model, x, h, target, step=5 / 35, ties="stable")
    for i in range(6):
        mono, probs = aix360_monotonicity(model, x[i], h[i], torch.zeros_like(x[i]), int(target[i]), 5)
        assert np.allclose(out["monotonicity_curve"][i, 1:].numpy(), probs, atol=1e-6)
        assert out["monotonicity"][i].item() == float(mono)
    assert out["monotonicity_curve"].shape == (6, 8)  # the baseline and 7 groups


def test_linear_model_with_its_own_contributions_is_monotone():
    # f = w . x on one class against a zero class: restoring pixels in ascending order
    # of their contribution w*x makes the logit difference rise exactly when the
    # contributions are non-negative; a sign-flipped map restores them the other way.
    torch.manual_seed(1)
    x = torch.rand(1, 3, 4, 4)
    w = torch.rand(3, 4, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2, bias=False))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = w.flatten()
    contrib = (w * x[0]).sum(0)[None]
    out = monotonicity(model, x, contrib, torch.tensor([0]), step=1 / 16, ties="stable")
    assert out["monotonicity"].item() == 1.0
    assert torch.all(out["monotonicity_curve"][0].diff() > 0)


def test_quantus_monotonicity_never_restores_pixels():
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    model = cnn(1)
    x = np.random.RandomState(0).rand(3, 1, 6, 9).astype(np.float32)
    a = np.random.RandomState(1).randn(3, 1, 6, 9).astype(np.float32)
    y = np.array([0, 2, 1])
    ref = quantus.Monotonicity(features_in_step=6, perturb_baseline=0.0, normalise=False, abs=False,
                               disable_warnings=True)(model=model, x_batch=x, y_batch=y, a_batch=a,
                                                      device="cpu")
    ours = monotonicity(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), torch.from_numpy(y),
                        step=6 / 54, ties="stable")
    # Quantus fills the baseline image with the baseline again at every step, so its
    # curve is flat and every map is "monotone"; the restored curves here are not.
    assert all(ref) and not ours["monotonicity"].all()


def test_monotonicity_correlation_matches_quantus_on_its_values():
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    model = cnn(1)
    x = np.random.RandomState(0).rand(3, 1, 6, 9).astype(np.float32)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0  # range [0, 1]: Quantus's uniform values
    a = np.random.RandomState(1).randn(3, 1, 6, 9).astype(np.float32)
    y = np.array([0, 2, 1])
    np.random.seed(3)
    ref = quantus.MonotonicityCorrelation(nr_samples=4, features_in_step=6, normalise=False, abs=True,
                                          disable_warnings=True)(model=model, x_batch=x, y_batch=y,
                                                                 a_batch=a, device="cpu")
    np.random.seed(3)  # Quantus draws one value per sample, draw by draw, group by group
    u = np.stack([np.stack([np.random.uniform(0, 1, size=3) for _ in range(4)], 1) for _ in range(9)], 1)
    rel = torch.from_numpy(np.abs(a[:, 0])).flatten(1)
    group = torch.from_numpy(np.argsort(np.argsort(rel.numpy(), axis=1, kind="stable"), axis=1) // 6)
    ours = variance_correlation(model, torch.from_numpy(x), rel, group, torch.from_numpy(u).float(),
                                torch.from_numpy(y), "softmax", 1e-5, 7)
    assert np.allclose(ours.numpy(), np.array(ref), atol=1e-5)


def test_degenerate_maps_and_invariance():
    model = cnn()
    g = torch.Generator().manual_seed(5)
    x, h = torch.randn(3, 3, 6, 5, generator=g), torch.randn(3, 6, 5, generator=g)
    h[0] = 0.0
    h[1, 0, 0] = float("nan")
    t = torch.tensor([2, 0, 1])
    batch = Batch(images=x, labels=t, ids=list("abc"), index=torch.tensor([3, 4, 5]))
    for fn, kw in ((monotonicity, {"step": 0.2}), (mono_corr, {"step": 0.2, "n_samples": 3})):
        name = fn.__name__
        full = fn(model, x, h, t, batch, seed=1, chunk=4, **kw)[name]
        assert torch.isfinite(full[[0, 2]]).all() and torch.isnan(full[1])
        for i in (0, 2):
            one = fn(model, x[i:i + 1], h[i:i + 1], t[i:i + 1],
                     Batch(images=x[i:i + 1], labels=t[i:i + 1], ids=["abc"[i]], index=torch.tensor([3 + i])),
                     seed=1, **kw)[name]
            assert one[0].item() == pytest.approx(full[i].item(), abs=1e-5)
    # A constant map: every group has the same relevance, so no rank correlation.
    assert mono_corr(model, x, h, t, step=0.2, n_samples=3, seed=1)["monotonicity_correlation"][0] == 0
