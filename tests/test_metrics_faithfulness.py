"""Faithfulness correlation and estimate against Quantus 0.6 (one-channel input, where
Quantus's channel entries are pixels, and its own random subsets) and against naive
loops of the papers on RGB input (whole pixels removed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.metrics import get
from faithbench.metrics._similarity import pearson
from faithbench.metrics.faithfulness import subset_correlation
from faithbench.types import Batch

correlation = get("faithfulness_correlation").fn
estimate = get("faithfulness_estimate").fn


def cnn(channels: int = 3, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, classes)).eval()


def grey_data():
    x = np.random.RandomState(0).randn(3, 1, 6, 9).astype(np.float32)  # non-square
    a = np.random.RandomState(1).randn(3, 1, 6, 9).astype(np.float32)
    return x, a, np.array([0, 2, 1])  # per-sample targets


def quantus_metric(name: str, **kw):
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    return getattr(quantus, name)(perturb_baseline=0.0, normalise=False, abs=False,
                                  disable_warnings=True, **kw)


def test_estimate_matches_quantus():
    model = cnn(1)
    x, a, y = grey_data()
    ref = quantus_metric("FaithfulnessEstimate", features_in_step=6)(
        model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu")
    ours = estimate(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), torch.from_numpy(y),
                    pixels_per_step=6, ties="stable")["faithfulness_estimate"]
    assert np.allclose(ours.numpy(), np.array(ref), atol=1e-5)


def test_correlation_matches_quantus_on_its_subsets():
    model = cnn(1)
    x, a, y = grey_data()
    metric = quantus_metric("FaithfulnessCorrelation", nr_runs=7, subset_size=5,
                            return_aggregate=False)
    np.random.seed(3)
    ref = metric(model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu")
    np.random.seed(3)  # Quantus draws run by run, sample by sample
    idx = np.stack([np.stack([np.random.choice(54, 5, replace=False) for _ in range(3)])
                    for _ in range(7)], 1)
    ours, _, _ = subset_correlation(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]),
                                    torch.from_numpy(y), torch.from_numpy(idx),
                                    torch.zeros(3, 1, 6, 9), "logit", 128)
    assert np.allclose(ours.numpy(), np.array(ref), atol=1e-5)


def rgb_data(b: int = 2, h: int = 5, w: int = 7):
    g = torch.Generator().manual_seed(4)
    return torch.randn(b, 3, h, w, generator=g), torch.randn(b, h, w, generator=g)


def naive_pearson(a: list[float], b: list[float]) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_estimate_naive_loop_rgb_with_partial_group():
    model, (x, h) = cnn(), rgb_data()
    t = torch.tensor([1, 2])
    out = estimate(model, x, h, t, pixels_per_step=4, ties="stable", activation="softmax")
    for i in range(2):
        f = lambda z: torch.softmax(model(z[None]), 1)[0, t[i]].item()  # noqa: E731
        order = np.argsort(-h[i].flatten().numpy(), kind="stable")
        sums, drops = [], []
        for start in range(0, 35, 4):  # 35 pixels: 8 groups of 4 and one of 3
            pix = torch.from_numpy(order[start:start + 4].copy())
            z = x[i].clone().view(3, -1)
            z[:, pix] = 0
            sums.append(float(h[i].flatten()[pix].sum()))
            drops.append(f(x[i]) - f(z.view_as(x[i])))
        assert out["faithfulness_estimate"][i].item() == pytest.approx(naive_pearson(sums, drops), abs=1e-5)


def test_correlation_removes_whole_pixels_rgb():
    model, (x, h) = cnn(), rgb_data()
    t = torch.tensor([0, 2])
    idx = torch.stack([torch.randperm(35, generator=torch.Generator().manual_seed(k))[:6]
                       for k in range(10)]).view(2, 5, 6)
    ours, sums, drops = subset_correlation(model, x, h, t, idx, torch.zeros_like(x), "logit", 3)
    for i in range(2):
        f = lambda z: model(z[None])[0, t[i]].item()  # noqa: E731
        s, d = [], []
        for j in range(5):
            z = x[i].clone().view(3, -1)
            z[:, idx[i, j]] = 0
            s.append(float(h[i].flatten()[idx[i, j]].sum()))
            d.append(f(x[i]) - f(z.view_as(x[i])))
        assert ours[i].item() == pytest.approx(naive_pearson(s, d), abs=1e-5)


def test_pearson_constant_rows_give_zero():
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]])
    assert torch.allclose(pearson(a, b), torch.tensor([0.0, 0.0, -1.0]))


def test_constant_map_and_nan_map():
    model, (x, h) = cnn(), rgb_data(3)
    t = torch.tensor([0, 1, 2])
    h[0] = 0.5
    h[1, 2, 2] = float("nan")
    out = correlation(model, x, h, t, subset=5, n_samples=6, seed=1)["faithfulness_correlation"]
    assert out[0].item() == 0.0 and torch.isnan(out[1]) and torch.isfinite(out[2])
    est = estimate(model, x, h, t, pixels_per_step=5, seed=1)["faithfulness_estimate"]
    assert torch.isfinite(est[[0, 2]]).all() and torch.isnan(est[1])
    # A constant map with equal-size groups has constant group sums: 0.
    assert estimate(model, x, h, t, pixels_per_step=7, seed=1)["faithfulness_estimate"][0].item() == 0.0


PARAMS = {"faithfulness_correlation": {"subset": 6, "n_samples": 9},
          "faithfulness_estimate": {"pixels_per_step": 5},
          "sensitivity_n": {"fractions": [0.1, 0.4], "n_samples": 5}}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_batch_chunk_invariance(name):
    model, (x, h) = cnn(), rgb_data(3)
    t = torch.tensor([2, 0, 1])
    fn = get(name).fn
    kw = {"seed": 5, **PARAMS[name]}
    full = fn(model, x, h, t, Batch(images=x, labels=t, ids=list("abc"), index=torch.tensor([7, 8, 9])),
              chunk=4, **kw)[name]
    for i in range(3):
        one = fn(model, x[i:i + 1], h[i:i + 1], t[i:i + 1],
                 Batch(images=x[i:i + 1], labels=t[i:i + 1], ids=["abc"[i]], index=torch.tensor([7 + i])),
                 **kw)[name]
        assert one[0].item() == pytest.approx(full[i].item(), abs=1e-5)


sensitivity_n = get("sensitivity_n").fn


def test_sensitivity_n_is_one_for_gradient_times_input_of_a_linear_model():
    # Ancona et al. 2018, Prop. 4: on a linear model gradient x input is sensitive-n for
    # every n (zero baseline): the drop is exactly the removed pixels' summed relevance.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 6, 4))
    x = torch.randn(2, 3, 5, 6)
    t = torch.tensor([1, 3])
    w = model[1].weight.detach()[t].view(2, 3, 5, 6)
    e = (w * x).sum(1)
    out = sensitivity_n(model, x, e, t, fractions=[0.05, 0.3, 0.9], n_samples=12, seed=0)
    assert torch.allclose(out["sensitivity_n_curve"], torch.ones(2, 3), atol=1e-5)
    noisy = sensitivity_n(model, x, e + torch.randn(2, 5, 6), t, fractions=[0.3], n_samples=12, seed=0)
    assert (noisy["sensitivity_n"] < 0.999).all()


def test_sensitivity_n_naive_loop():
    from faithbench.metrics.faithfulness import SENSITIVITY_N_STREAM, random_subsets
    model, (x, h) = cnn(), rgb_data()
    t = torch.tensor([2, 1])
    out = sensitivity_n(model, x, h, t, fractions=[0.1, 0.5], n_samples=6, seed=4)
    for k, size in enumerate([4, 18]):  # round(0.1 * 35), round(0.5 * 35)
        idx = random_subsets(35, size, 6, 4, [0, 1], SENSITIVITY_N_STREAM + k)
        for i in range(2):
            f = lambda z: model(z[None])[0, t[i]].item()  # noqa: E731
            s, d = [], []
            for j in range(6):
                z = x[i].clone().view(3, -1)
                z[:, idx[i, j]] = 0
                s.append(float(h[i].flatten()[idx[i, j]].sum()))
                d.append(f(x[i]) - f(z.view_as(x[i])))
            assert out["sensitivity_n_curve"][i, k].item() == pytest.approx(naive_pearson(s, d), abs=1e-5)
    assert torch.allclose(out["sensitivity_n"], out["sensitivity_n_curve"].mean(1))
