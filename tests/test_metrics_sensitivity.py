"""avg_sensitivity, local_lipschitz, relative_input_stability and
relative_output_stability against Quantus 0.6 on the same model, maps and noise draws,
and against naive loops of the papers where Quantus departs from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._common import per_sample_noise
from faithbench.params import check_params
from faithbench.types import Batch

quantus = pytest.importorskip("quantus")

B, H, W = 3, 6, 9  # non-square


def tiny_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(24, classes)).eval()


def mlp(classes: int = 4) -> nn.Module:
    """Without pooling, so that noise can flip its prediction."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 16), nn.ReLU(), nn.Linear(16, classes)).eval()


def gradient(model):
    def explain(x, target, model=model):
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
        return g.sum(1)  # signed, so the relative metrics see no zero entries
    return explain


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, H, W, generator=g), torch.tensor([0, 3, 1])  # per-sample targets


def draws(kind: str, scale: float, stream: int, n: int, ids=(0, 1, 2)) -> torch.Tensor:
    """The metrics' noise [n,B,3,H,W], drawn as they draw it."""
    return torch.stack([per_sample_noise((3, H, W), 5, list(ids), torch.device("cpu"), kind=kind,
                                         stream=stream + j) * scale for j in range(n)])


def quantus_run(metric, model, x, h, t, explain, noise):
    """Quantus on our draws: its perturb_func is called once per sample step, in order."""
    step = iter(range(noise.shape[0]))

    def perturb(arr, indices, **kwargs):
        return arr + noise[next(step)].reshape(arr.shape).double().numpy()

    def q_explain(model, inputs, targets, **kwargs):
        z = torch.as_tensor(inputs, dtype=torch.float32)
        return explain(z, torch.as_tensor(targets).long())[:, None].numpy()

    metric.perturb_func = perturb
    return np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(),
                             a_batch=h[:, None].numpy(), explain_func=q_explain,
                             channel_first=True, device="cpu"), dtype=np.float64)


def test_avg_sensitivity_matches_quantus_and_max_sensitivity_mean():
    model, (x, t) = tiny_cnn(), inputs()
    explain = gradient(model)
    h = explain(x, t)
    n, r = 4, 0.05
    ours = get("avg_sensitivity").fn(model, x, h, t, explain=explain, radius=r, n_samples=n, seed=5)
    ref = quantus_run(quantus.AvgSensitivity(nr_samples=n, disable_warnings=True),
                      model, x, h, t, explain, draws("uniform", r, 200, n))
    assert np.allclose(ours["avg_sensitivity"].numpy(), ref, rtol=1e-4, atol=1e-6)
    same = get("max_sensitivity").fn(model, x, h, t, explain=explain, radius=r, n_samples=n, seed=5)
    assert torch.allclose(ours["avg_sensitivity"], same["max_sensitivity_mean"])
    assert (ours["avg_sensitivity"] <= same["max_sensitivity"] + 1e-7).all()


def test_local_lipschitz_matches_quantus():
    model, (x, t) = tiny_cnn(), inputs(1)
    explain = gradient(model)
    h = explain(x, t)
    n, s = 5, 0.1
    ours = get("local_lipschitz").fn(model, x, h, t, explain=explain, sigma=s, n_samples=n, seed=5)
    q = quantus.LocalLipschitzEstimate(nr_samples=n, normalise=False, disable_warnings=True)
    ref = quantus_run(q, model, x, h, t, explain, draws("normal", s, 900, n))
    assert np.allclose(ours["local_lipschitz"].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_local_lipschitz_by_hand_linear_explainer():
    x = torch.randn(2, 3, 5, 7)
    lin = lambda z, t: 2.0 * z.sum(1)  # noqa: E731  e(x+d) - e(x) = 2 d.sum(1)
    out = get("local_lipschitz").fn(None, x, lin(x, None), torch.zeros(2, dtype=torch.long),
                                    explain=lin, sigma=0.3, n_samples=3, seed=5)
    d = torch.stack([per_sample_noise((3, 5, 7), 5, [0, 1], x.device, stream=900 + j) * 0.3
                     for j in range(3)], 1)
    exp = (2 * d.sum(2)).flatten(2).norm(dim=2) / d.flatten(2).norm(dim=2)
    assert torch.allclose(out["local_lipschitz"], exp.max(1).values, rtol=1e-5)
    assert torch.allclose(out["local_lipschitz_mean"], exp.mean(1), rtol=1e-5)
    # A constant explainer does not move: 0, and a NaN map gives NaN.
    const = lambda z, t: torch.ones(z.shape[0], 5, 7)  # noqa: E731
    h = torch.ones(2, 5, 7)
    h[1, 0, 0] = float("nan")
    out = get("local_lipschitz").fn(None, x, h, torch.zeros(2, dtype=torch.long), explain=const)
    assert out["local_lipschitz"][0] == 0 and out["local_lipschitz"][1].isnan()


@pytest.mark.parametrize("key,cls", [("relative_input_stability", "RelativeInputStability"),
                                     ("relative_output_stability", "RelativeOutputStability")])
def test_relative_stability_matches_quantus(key, cls):
    model, (x, t) = tiny_cnn(), inputs(2)
    explain = gradient(model)
    h = explain(x, t)
    n, r = 4, 0.01  # small enough that no neighbour changes the prediction
    ours = get(key).fn(model, x, h, t, explain=explain, radius=r, n_samples=n, seed=5)
    assert ours[f"{key}_unchanged"].tolist() == [1.0, 1.0, 1.0]
    q = getattr(quantus, cls)(nr_samples=n, disable_warnings=True)
    ref = quantus_run(q, model, x, h, t, explain, draws("uniform", r, 950, n))
    assert np.allclose(ours[key].numpy(), ref, rtol=1e-4)


def naive_relative(model, x, h, t, explain, noise, output: bool, eps=1e-6):
    """Agarwal et al.'s RIS and ROS, one sample and one neighbour at a time."""
    res = []
    for i in range(x.shape[0]):
        best = None
        for j in range(noise.shape[0]):
            xi, xj = x[i:i + 1], x[i:i + 1] + noise[j, i:i + 1]
            with torch.no_grad():
                li, lj = model(xi)[0], model(xj)[0]
            if li.argmax() != lj.argmax():
                continue
            e, ej = h[i], explain(xj, t[i:i + 1])[0]
            num = float(torch.linalg.norm(((e - ej) / torch.where(e == 0, eps, e)).flatten()))
            if output:
                den = float(torch.linalg.norm(li - lj))
            else:
                den = float(torch.linalg.norm(((xi - xj) / torch.where(xi == 0, eps, xi)).flatten()))
            v = num / max(den, eps)
            best = v if best is None else max(best, v)
        res.append(float("nan") if best is None else best)
    return np.array(res)


@pytest.mark.parametrize("key", ["relative_input_stability", "relative_output_stability"])
def test_relative_stability_skips_changed_predictions_like_the_paper(key):
    model, (x, t) = mlp(), inputs(3)
    explain = gradient(model)
    h = explain(x, t)
    n, r = 6, 1.5  # large: some neighbours change the prediction
    batch = Batch(images=x, labels=t, ids=["a", "b", "c"], index=torch.tensor([7, 8, 9]),
                  orig_size=torch.ones(B, 2), scale=torch.ones(B, 2), offset=torch.zeros(B, 2))
    ours = get(key).fn(model, x, h, t, batch, explain=explain, radius=r, n_samples=n, seed=5)
    noise = draws("uniform", r, 950, n, ids=(7, 8, 9))
    ref = naive_relative(model, x, h, t, explain, noise, key == "relative_output_stability")
    unchanged = ours[f"{key}_unchanged"]
    assert ((unchanged > 0) & (unchanged < 1)).any(), "the case must mix kept and changed predictions"
    assert np.allclose(ours[key].numpy(), ref, rtol=1e-4, equal_nan=True)


def test_ties_constant_maps_and_batch_independence():
    model, (x, t) = tiny_cnn(), inputs(4)
    const = lambda z, t: torch.full((z.shape[0], H, W), 0.5)  # noqa: E731
    h = torch.full((B, H, W), 0.5)  # a constant map: all ties, never moves
    for key in ("avg_sensitivity", "local_lipschitz", "relative_input_stability",
                "relative_output_stability"):
        out = get(key).fn(model, x, h, t, explain=const, seed=1)
        assert out[key].tolist() == [0.0, 0.0, 0.0], key
    explain = gradient(model)
    h = explain(x, t)
    for key in ("avg_sensitivity", "local_lipschitz", "relative_output_stability"):
        whole = get(key).fn(model, x, h, t, explain=explain, seed=2, n_samples=3)[key]
        one = get(key).fn(model, x[1:2], h[1:2], t[1:2], explain=explain, seed=2, n_samples=3,
                          batch=Batch(images=x[1:2], labels=t[1:2], ids=["b"], index=torch.tensor([1]),
                                      orig_size=torch.ones(1, 2), scale=torch.ones(1, 2),
                                      offset=torch.zeros(1, 2)))[key]
        assert torch.allclose(whole[1:2], one, rtol=1e-4), key  # conv sums differ by batch size


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="sigma"):
        check_params(get("local_lipschitz").fn, {"sigma": 0.0}, "metric 'local_lipschitz'")
    with pytest.raises(ConfigError, match="n_samples"):
        check_params(get("relative_input_stability").fn, {"n_samples": 0}, "metric")
    with pytest.raises(ConfigError, match="needs explain"):
        get("avg_sensitivity").fn(None, torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2),
                                  torch.zeros(1, dtype=torch.long))
