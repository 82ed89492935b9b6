"""SmoothGrad and the gradient helpers, against naive loops of the paper's definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.methods._baselines import gaussian_blur

TARGET = torch.tensor([0, 1, 2, 3])


def smooth(model, x, **params):
    return get("smooth_grad").fn(model, x, TARGET, **params)


@pytest.mark.parametrize("base,params", [("saliency", {}), ("gradient_x_input", {"reduce": "abs_sum"}),
                                         ("grad_cam", {})])
def test_smooth_grad_without_noise_is_the_base(tiny_cnn, images, base, params):
    ours = smooth(tiny_cnn, images, base=base, noise_level=0.0, n_samples=2, base_params=params,
                  layer="features.5")
    extra = {"layer": "features.5"} if base == "grad_cam" else {}
    ref = get(base).fn(tiny_cnn, images, TARGET, **params, **extra)
    torch.testing.assert_close(ours, ref)


def test_smooth_grad_averages_gradients_then_reduces(tiny_cnn, images):
    # Naive loop of Smilkov et al. Eq. 2 with the noise drawn as documented: one
    # N(0, 1) [3,H,W] draw per sample from a CPU generator seeded with `seed`,
    # scaled per image by noise_level * (max(x) - min(x)).
    n, level = 4, 0.2
    gen = torch.Generator().manual_seed(7)
    grads = torch.zeros_like(images)
    reduced_first = torch.zeros(4, 32, 32)
    for _ in range(n):
        eps = torch.randn(images.shape[1:], generator=gen)
        for i in range(4):
            xi = (images[i] + level * (images[i].max() - images[i].min()) * eps)[None].requires_grad_(True)
            (g,) = torch.autograd.grad(tiny_cnn(xi)[0, TARGET[i]], xi)
            grads[i] += g[0] / n
            reduced_first[i] += g[0].abs().amax(0) / n
    ours = smooth(tiny_cnn, images, noise_level=level, n_samples=n, seed=7)
    torch.testing.assert_close(ours, grads.abs().amax(1), rtol=1e-5, atol=1e-9)
    # Reducing each noisy map first (the mean of max|g|) would be a different map.
    assert (reduced_first - ours).abs().max() > 1e-3 * ours.abs().max()


def test_smooth_grad_of_a_linear_model_is_its_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(4, 3, 8, 8)
    ref = model[1].weight[TARGET].view(4, 3, 8, 8).abs().amax(1)
    torch.testing.assert_close(smooth(model, x, n_samples=3, seed=1), ref)


def test_smooth_grad_rejects_bad_settings(tiny_cnn, images):
    with pytest.raises(ConfigError, match="itself"):
        smooth(tiny_cnn, images, base="smooth_grad")
    with pytest.raises(ConfigError, match="unknown method 'saliancy'"):
        smooth(tiny_cnn, images, base="saliancy")
    with pytest.raises(ConfigError, match="n_step"):
        smooth(tiny_cnn, images, base="saliency", base_params={"n_step": 3})


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    ours = gaussian_blur(x, 2.0)
    # scipy's mode "reflect" is the half-sample symmetric extension, torch's "reflect"
    # is whole-sample: compare with scipy's "mirror", truncate at 3 sigma like ours.
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 2.0, 2.0), mode="mirror", truncate=3.0)
    torch.testing.assert_close(ours, torch.from_numpy(ref))


def test_integrated_gradients_rejects_unknown_baseline_and_rule(tiny_cnn, images):
    ig = get("integrated_gradients").fn
    with pytest.raises(ConfigError, match="baseline 'black'.*zero"):
        ig(tiny_cnn, images, TARGET, baseline="black")
    with pytest.raises(ConfigError, match="gausslegendre"):
        ig(tiny_cnn, images, TARGET, rule="simpson")


def test_integrated_gradients_internal_batch_size_invariance(tiny_cnn, images):
    ig = get("integrated_gradients").fn
    ref = ig(tiny_cnn, images, TARGET, n_steps=6, internal_batch_size=1000)
    for size in (1, 5):
        out = ig(tiny_cnn, images, TARGET, n_steps=6, internal_batch_size=size)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item())


@pytest.mark.parametrize("rule,expected", [("guided_backprop", [0.0, 1.0, 0.0]), ("deconvnet", [1.0, 1.0, 1.0])])
def test_clipped_relu_rule_blocks_the_saturated_range(rule, expected):
    # ReLU6: "positive" for guided backprop means inside the linear range (0, 6).
    from faithbench.methods._grad import CHANNEL_MAPS

    class Net(nn.Module):
        def forward(self, x):
            return nn.ReLU6()(x.flatten(1)).sum(1, keepdim=True)

    x = torch.tensor([-1.0, 3.0, 7.0]).view(1, 3, 1, 1)
    per_channel = CHANNEL_MAPS[rule].fn(Net(), x, torch.tensor([0]))
    assert per_channel.flatten().tolist() == expected
