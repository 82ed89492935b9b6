"""model_randomisation against a naive cascading loop (scipy Spearman, scikit-image SSIM),
toy explainers, Quantus's layer order, and the untouched original model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get

mr = get("model_randomisation").fn


def gradient_explainer(default):
    def explain(x, target, model=None):
        m = model if model is not None else default
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(m(x).gather(1, target.view(-1, 1)).sum(), x)
        return g.abs().amax(1)
    return explain


def unit(v):
    return (v - v.min()) / (v.max() - v.min())


def test_matches_naive_cascade_and_leaves_model_untouched(tiny_cnn, images):
    explain = gradient_explainer(tiny_cnn)
    t = torch.tensor([0, 1, 2, 3])
    h = explain(images, t)
    before = copy.deepcopy(tiny_cnn.state_dict())
    rng = torch.get_rng_state()
    out = mr(tiny_cnn, images, h, t, explain=explain, seed=5)
    assert all(torch.equal(before[k], v) for k, v in tiny_cnn.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    m = copy.deepcopy(tiny_cnn)
    for step, name in enumerate(["fc", "features.5", "features.2", "features.0"]):
        torch.manual_seed(0x5EED_0000 + 5 * 1_000_003 + step)
        m.get_submodule(name).reset_parameters()
        hr = explain(images, t, model=m)
        for i in range(4):
            rho = spearmanr(hr[i].abs().flatten().numpy(), h[i].abs().flatten().numpy())[0]
            sim = structural_similarity(unit(hr[i].abs()).double().numpy(), unit(h[i].abs()).double().numpy(),
                                        data_range=1.0)
            assert out["model_randomisation_curve"][i, step].item() == pytest.approx(rho, abs=1e-5)
            assert out["model_randomisation_ssim_curve"][i, step].item() == pytest.approx(sim, abs=1e-5)
    assert torch.allclose(out["model_randomisation"], out["model_randomisation_curve"].mean(1))
    again = mr(tiny_cnn, images, h, t, explain=explain, seed=5)
    assert torch.equal(again["model_randomisation_curve"], out["model_randomisation_curve"])


def test_toy_explainers():
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a model built from seed 0 still gets new weights from seed 0
        lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 1])
    explain = gradient_explainer(lin)
    out = mr(lin, x, explain(x, t), t, explain=explain)
    # |gradient| of a linear model is |W_t|: new random weights are unrelated to the old.
    assert out["model_randomisation_curve"].shape == (2, 1)
    assert out["model_randomisation"].abs().max() < 0.2
    # A map that ignores the model stays identical: similarity 1 (it fails the check).
    edges = lambda z, target, model=None: z.diff(dim=-1, prepend=z[..., :1]).abs().sum(1)  # noqa: E731
    out = mr(lin, x, edges(x, t), t, explain=edges)
    assert out["model_randomisation"].tolist() == [1.0, 1.0]
    assert torch.allclose(out["model_randomisation_ssim"], torch.ones(2))


def test_block_layers_on_a_resnet_and_quantus_order(tiny_resnet, tiny_cnn):
    x = torch.randn(1, 3, 16, 16)
    t = torch.tensor([1])
    explain = gradient_explainer(tiny_resnet)
    h = explain(x, t)
    out = mr(tiny_resnet, x, h, t, explain=explain, layers=["fc", "layer4"])
    assert out["model_randomisation_curve"].shape == (1, 2)
    assert torch.isfinite(out["model_randomisation_curve"]).all()
    with pytest.raises(ConfigError, match="unknown layer 'layer9'.*layer4"):
        mr(tiny_resnet, x, h, t, explain=explain, layers=["layer9"])
    with pytest.raises(ConfigError, match="no parameters"):
        mr(tiny_resnet, x, h, t, explain=explain, layers=["relu"])
    quantus_model = pytest.importorskip("quantus.helpers.model.pytorch_model")
    from faithbench.metrics.sanity import cascade
    with torch.random.fork_rng():  # Quantus reseeds the global generator
        gen = quantus_model.PyTorchModel(tiny_cnn, channel_first=True).get_random_layer_generator()
        names = [name for name, _ in gen]
    assert [g[0] for g in cascade(tiny_cnn, None)] == names


def test_needs_explain(tiny_cnn, images):
    with pytest.raises(ConfigError, match="needs explain"):
        mr(tiny_cnn, images, images[:, 0], torch.zeros(4, dtype=torch.long))
    assert np.isnan(mr(tiny_cnn, images, images[:, 0] * float("nan"), torch.zeros(4, dtype=torch.long),
                       explain=lambda z, t, model=None: z[:, 0])["model_randomisation"]).all()


def test_a_failed_step_is_left_out_of_the_mean(tiny_cnn, images):
    calls = []

    def explain(z, t, model=None):
        calls.append(1)
        out = z.sum(1).clone()
        if len(calls) == 1:  # the first re-initialised model fails on sample 0
            out[0, 0, 0] = float("nan")
        return out
    t = torch.zeros(4, dtype=torch.long)
    out = mr(tiny_cnn, images, images.sum(1), t, explain=explain)
    curve = out["model_randomisation_curve"]
    assert torch.isnan(curve[0, 0]) and not torch.isnan(curve[0, 1:]).any()
    assert torch.allclose(out["model_randomisation"][0], curve[0, 1:].mean())
    assert torch.allclose(out["model_randomisation"][1:], curve[1:].mean(1))
