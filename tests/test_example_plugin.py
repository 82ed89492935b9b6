"""The example plugin's method, VarGrad, against references: a per-sample, per-noise
loop with autograd, and a linear model, whose gradient does not depend on the input
(so its variance is exactly zero)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faithbench-example-plugin"


@pytest.fixture
def var_grad(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "faithbench_example_plugin.var_grad", raising=False)
    from faithbench_example_plugin.var_grad import var_grad

    return var_grad


def _reference(model, x, target, n, noise, seed):
    """Naive VarGrad: the same noise draws, then one image and one noisy copy at a time;
    the variance written out as mean((g - mean g)^2)."""
    eps = torch.randn((n, *x.shape), generator=torch.Generator().manual_seed(seed))
    out = torch.zeros(x.shape[0], *x.shape[-2:])
    for b in range(x.shape[0]):
        span = x[b].max() - x[b].min()
        grads = []
        for s in range(n):
            xb = (x[b : b + 1] + noise * span * eps[s, b : b + 1]).requires_grad_(True)
            model(xb)[0, target[b]].backward()
            grads.append(xb.grad[0].clone())
        mean = sum(grads) / n
        out[b] = sum((g - mean) ** 2 for g in grads).sum(0) / n
    return out


def test_var_grad_equals_a_naive_loop(var_grad, tiny_cnn):
    x = torch.randn(3, 3, 16, 16)
    target = torch.tensor([0, 2, 4])
    got = var_grad(tiny_cnn, x, target, n_samples=5, noise=0.2, seed=3)
    want = _reference(tiny_cnn, x, target, 5, 0.2, 3)
    assert got.shape == (3, 16, 16) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-7, rtol=1e-4)
    assert got.abs().sum() > 0


def test_var_grad_of_a_linear_model_is_zero_and_noise_free_is_zero(var_grad, tiny_cnn):
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([1, 3])
    assert torch.allclose(var_grad(linear, x, target, n_samples=4), torch.zeros(2, 8, 8), atol=1e-10)
    assert var_grad(tiny_cnn, x, target, n_samples=3, noise=0.0).abs().max() < 1e-10


def test_var_grad_is_seeded_and_checks_its_arguments(var_grad, tiny_cnn):
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([0, 1])
    a, b = (var_grad(tiny_cnn, x, target, n_samples=3, seed=7) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, var_grad(tiny_cnn, x, target, n_samples=3, seed=8))
    with pytest.raises(ValueError, match="n_samples=0"):
        var_grad(tiny_cnn, x, target, n_samples=0)
