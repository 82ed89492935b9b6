"""Infidelity against Captum's ``captum.metrics.infidelity`` on the same perturbations,
and against a naive loop of the paper's Eq. 2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics.infidelity import perturbations
from faithbench.types import Batch

infidelity = get("infidelity").fn


def tiny_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(24, classes)).eval()


def data(b: int = 3, h: int = 6, w: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g), torch.randn(b, h, w, generator=g)


@pytest.mark.parametrize("kind", ["noisy_baseline", "gaussian", "square"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_captum_on_the_same_perturbations(kind, normalize):
    from captum.metrics import infidelity as captum_infidelity
    model = tiny_cnn()
    x, h = data()  # non-square
    target = torch.tensor([0, 3, 1])  # per-sample targets
    n = 5
    pert = perturbations(x, kind, 0.2, 3, n, seed=7, ids=[0, 1, 2])

    def perturb_func(inputs):
        # Captum repeats each input n times (repeat_interleave): hand back our draws.
        flat = pert.reshape(-1, *x.shape[1:])
        return flat, inputs - flat

    ref = captum_infidelity(model, perturb_func, x, h[:, None].expand_as(x).contiguous(),
                            target=target, n_perturb_samples=n, normalize=normalize)
    ours = infidelity(model, x, h, target, perturbation=kind, sigma=0.2, patch=3, n_samples=n,
                      normalize=normalize, seed=7)
    assert torch.allclose(ours["infidelity"], ref, rtol=1e-4, atol=1e-6)


def test_naive_loop_of_the_paper_with_probabilities():
    model = tiny_cnn()
    x, h = data(2, 7, 5, seed=1)
    target = torch.tensor([2, 1])
    n = 4
    pert = perturbations(x, "noisy_baseline", 0.3, 4, n, seed=2, ids=[0, 1])
    out = infidelity(model, x, h, target, sigma=0.3, n_samples=n, activation="softmax", seed=2)
    for i in range(2):
        f = lambda z: torch.softmax(model(z[None]), 1)[0, target[i]].item()  # noqa: E731
        a = [float((pert[i, j] * h[i]).sum()) for j in range(n)]
        d = [f(x[i]) - f(x[i] - pert[i, j]) for j in range(n)]
        beta = sum(ai * di for ai, di in zip(a, d)) / sum(ai * ai for ai in a)
        ref = sum((beta * ai - di) ** 2 for ai, di in zip(a, d)) / n
        assert out["infidelity"][i].item() == pytest.approx(ref, rel=1e-4, abs=1e-7)
        assert out["infidelity_beta"][i].item() == pytest.approx(beta, rel=1e-4)


def test_square_perturbation_is_a_patch_of_the_image():
    x, _ = data(1, 8, 6)
    pert = perturbations(x, "square", 0.2, 3, 6, seed=0, ids=[0])
    for j in range(6):
        support = pert[0, j].abs().sum(0) > 0
        assert support.sum() == 9 and torch.equal(pert[0, j][:, support], x[0][:, support])


def test_normalized_score_ignores_the_map_scale_and_zero_map():
    model = tiny_cnn()
    x, h = data()
    t = torch.tensor([0, 1, 2])
    a = infidelity(model, x, h, t, seed=1)["infidelity"]
    b = infidelity(model, x, 5 * h, t, seed=1)["infidelity"]
    assert torch.allclose(a, b, rtol=1e-5)
    zero = infidelity(model, x, torch.zeros_like(h), t, seed=1)
    assert torch.equal(zero["infidelity_beta"], torch.zeros(3))  # beta 0: mean squared change
    nan_map = h.clone()
    nan_map[1, 0, 0] = float("inf")
    out = infidelity(model, x, nan_map, t, seed=1)["infidelity"]
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()


def test_batch_chunk_and_seed_invariance():
    model = tiny_cnn()
    x, h = data()
    t = torch.tensor([3, 0, 2])
    batch = Batch(images=x, labels=t, ids=["a", "b", "c"], index=torch.tensor([4, 5, 6]))
    full = infidelity(model, x, h, t, batch, perturbation="square", chunk=4, seed=3)
    for i in range(3):
        one_batch = Batch(images=x[i:i + 1], labels=t[i:i + 1], ids=["abc"[i]],
                          index=torch.tensor([4 + i]))
        one = infidelity(model, x[i:i + 1], h[i:i + 1], t[i:i + 1], one_batch,
                         perturbation="square", seed=3)
        assert torch.allclose(one["infidelity"][0], full["infidelity"][i], rtol=1e-5)
    other = infidelity(model, x, h, t, batch, perturbation="square", seed=4)
    assert not torch.equal(other["infidelity"], full["infidelity"])


def test_bad_perturbation_is_refused():
    x, h = data(1)
    with pytest.raises(ConfigError, match="perturbation"):
        infidelity(tiny_cnn(), x, h, torch.tensor([0]), perturbation="blur")
