"""Similarity helpers vs scipy/scikit-image, noise/rotation/translation stability vs a
naive loop and equivariant toys, max_sensitivity vs Captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from skimage.transform import rotate as sk_rotate
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._common import per_sample_noise
from faithbench.metrics._similarity import spearman, ssim, topk_iou
from faithbench.metrics._stability import rotate, shift
from faithbench.types import Batch


def gradient_explainer(model):
    def explain(x, target, model=model):
        with torch.enable_grad():  # Captum calls explanation functions under no_grad
            x = x.detach().clone().requires_grad_(True)
            out = model(x).gather(1, target.view(-1, 1)).sum()
            (g,) = torch.autograd.grad(out, x)
        return g.abs().amax(1)
    return explain


def channel0(x, target, model=None):
    return x[:, 0].clone()


class Constant(nn.Module):
    def forward(self, x):
        return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], -1)


def full_batch(n):
    return Batch(images=torch.zeros(n, 3, 1, 1), labels=torch.zeros(n, dtype=torch.long),
                 ids=[str(i) for i in range(n)], index=torch.arange(100, 100 + n),
                 orig_size=torch.ones(n, 2), scale=torch.ones(n, 2), offset=torch.zeros(n, 2))


# --- similarity helpers vs independent references ----------------------------------------

def test_spearman_matches_scipy_with_ties_and_constant_rule():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (4, 60), generator=g).float()
    b = torch.randn(4, 60, generator=g).round(decimals=0)
    ours = spearman(a, b)
    ref = [spearmanr(a[i].numpy(), b[i].numpy())[0] for i in range(4)]
    assert np.abs(ours.numpy() - np.array(ref)).max() < 1e-6
    c = torch.zeros(2, 60)
    assert spearman(c, torch.stack([c[0], b[0]])).tolist() == [1.0, 0.0]


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 21, 26, generator=g)
    b = a + 0.4 * torch.randn(3, 21, 26, generator=g)
    na = (a - a.amin((1, 2), keepdim=True)) / (a.amax((1, 2), keepdim=True) - a.amin((1, 2), keepdim=True))
    nb = (b - b.amin((1, 2), keepdim=True)) / (b.amax((1, 2), keepdim=True) - b.amin((1, 2), keepdim=True))
    ref = [structural_similarity(na[i].double().numpy(), nb[i].double().numpy(), data_range=1.0)
           for i in range(3)]
    assert np.abs(ssim(a, b).numpy() - np.array(ref)).max() < 1e-6
    # A 5x5 map: the window shrinks to 5 (scikit-image needs win_size=5 said explicitly).
    def n(v):
        return (v - v.amin((1, 2), keepdim=True)) / (v.amax((1, 2), keepdim=True) - v.amin((1, 2), keepdim=True))
    sa, sb = n(a[:, :5, :5]), n(b[:, :5, :5])
    small = [structural_similarity(sa[i].double().numpy(), sb[i].double().numpy(),
                                   data_range=1.0, win_size=5) for i in range(3)]
    assert np.abs(ssim(sa, sb).numpy() - np.array(small)).max() < 1e-6


def test_topk_iou_by_hand():
    a = torch.tensor([[5.0, 4, 3, 2, 1, 0, 0, 0, 0, 0]])
    b = torch.tensor([[0.0, 4, 3, 9, 1, 0, 0, 0, 0, 0]])
    # top 3: {0,1,2} vs {3,1,2}: 2 shared of 4 -> 0.5
    assert topk_iou(a, b, 0.3).item() == pytest.approx(0.5)
    assert topk_iou(a, a, 0.3).item() == 1.0


def test_rotation_helper_against_rot90_and_scikit_image():
    z = torch.randn(2, 3, 9, 9)
    assert torch.allclose(rotate(z, 90), torch.rot90(z, 1, (2, 3)), atol=1e-5)
    img = torch.rand(15, 19, dtype=torch.float64)
    ours = rotate(img[None, None], 7.0)[0, 0]
    ref = torch.from_numpy(sk_rotate(img.numpy(), 7.0, order=1, mode="constant", cval=0.0))
    valid = rotate(torch.ones(1, 1, 15, 19, dtype=torch.float64), 7.0)[0, 0] > 1 - 1e-4
    assert valid.sum() > 150 and (ours - ref)[valid].abs().max() < 1e-6
    assert shift(torch.arange(9.0).view(3, 3), 1, -1).tolist() == [[0, 0, 0], [1, 2, 0], [4, 5, 0]]


# --- stability metrics -------------------------------------------------------------------

def test_noise_stability_matches_naive_loop(tiny_cnn, images):
    explain = gradient_explainer(tiny_cnn)
    t = torch.tensor([0, 1, 2, 3])
    h = explain(images, t)
    batch = full_batch(4)
    out = get("noise_stability").fn(tiny_cnn, images, h, t, batch, explain=explain,
                                    sigmas=[0.05, 0.3], seed=7)
    pred = tiny_cnn(images).argmax(1)
    for j, sigma in enumerate([0.05, 0.3]):
        eps = per_sample_noise((3, 32, 32), 7, batch.index.tolist(), images.device, stream=100 + j)
        for i in range(4):
            xi = images[i] + sigma * (images[i].max() - images[i].min()) * eps[i]
            hi = explain(xi[None], t[i:i + 1])[0]
            same = bool(tiny_cnn(xi[None]).argmax(1)[0] == pred[i])
            rho = spearmanr(hi.flatten().numpy(), h[i].flatten().numpy())[0]
            got = out["noise_stability_curve"][i, j].item()
            assert (np.isnan(got) and not same) or got == pytest.approx(rho, abs=1e-5)
    assert torch.isfinite(out["noise_stability"]).all()
    assert (out["noise_stability_ssim"] <= 1).all() and (out["noise_stability_topk_iou"] <= 1).all()


def test_noise_stability_toys_and_batch_invariance(images):
    fixed = lambda x, t, model=None: torch.arange(32.0 * 32).view(1, 32, 32).expand(x.shape[0], -1, -1)  # noqa: E731
    t = torch.zeros(4, dtype=torch.long)
    out = get("noise_stability").fn(Constant(), images, fixed(images, t), t, explain=fixed)
    assert out["noise_stability"].tolist() == [1.0] * 4 and out["noise_stability_ssim"].tolist() == [1.0] * 4
    batch = full_batch(4)
    full = get("noise_stability").fn(Constant(), images, images[:, 0], t, batch, explain=channel0, seed=3)
    assert (full["noise_stability"] < 1).all()  # the map follows the noise
    for i in range(4):
        one = get("noise_stability").fn(Constant(), images[i:i + 1], images[i:i + 1, 0], t[i:i + 1],
                                        batch.select(torch.tensor([i])), explain=channel0, seed=3)
        for k in full:
            assert torch.allclose(full[k][i], one[k][0], atol=1e-6, equal_nan=True), k


def test_changed_prediction_gives_nan():
    class Sign(nn.Module):  # the prediction flips when pixel (0,0) of channel 0 turns positive
        def forward(self, x):
            v = x[:, 0, 0, 0]
            return torch.stack([v, -v], 1)

    x = torch.full((1, 3, 8, 8), -1e-3)
    x[0, 1] = 1.0  # a range of 1 so that noise swamps the tiny negative pixel
    out = get("noise_stability").fn(Sign(), x, x[:, 0], torch.tensor([1]), explain=channel0,
                                    sigmas=[0.5] * 6, seed=0)
    assert torch.isnan(out["noise_stability_curve"]).any()
    assert 0 < out["noise_stability_unchanged"].item() < 1


@pytest.mark.parametrize("name,kw", [("rotation_stability", {"angles": [-7.0, 12.0, 90.0]}),
                                     ("translation_stability", {"shifts": [[0.1, -0.2], [0.0, 0.3]]})])
def test_equivariant_map_is_perfectly_stable(images, name, kw):
    t = torch.zeros(4, dtype=torch.long)
    out = get(name).fn(Constant(), images, images[:, 0], t, explain=channel0, **kw)
    assert torch.allclose(out[name], torch.ones(4), atol=1e-6)
    assert torch.allclose(out[f"{name}_topk_iou"], torch.ones(4))
    # A map that does not move with the image is not stable.
    still = get(name).fn(Constant(), images, images[:, 0], t, explain=lambda x, t, model=None: images[:, 0], **kw)
    assert (still[name] < 0.5).all()


def test_translation_stability_matches_naive_loop(tiny_cnn, images):
    explain = gradient_explainer(tiny_cnn)
    t = torch.tensor([0, 1, 2, 3])
    h = explain(images, t)
    out = get("translation_stability").fn(tiny_cnn, images, h, t, explain=explain, shifts=[[0.125, -0.0625]])
    dy, dx = 4, -2
    for i in range(4):
        xs = torch.zeros_like(images[i])
        xs[:, dy:, :32 + dx] = images[i][:, :32 - dy, -dx:]
        hs = explain(xs[None], t[i:i + 1])[0][dy:, :32 + dx]
        ref = h[i][:32 - dy, -dx:]
        rho = spearmanr(hs.flatten().numpy(), ref.flatten().numpy())[0]
        same = bool(tiny_cnn(xs[None]).argmax() == tiny_cnn(images[i:i + 1]).argmax())
        got = out["translation_stability"][i].item()
        assert (np.isnan(got) and not same) or got == pytest.approx(rho, abs=1e-5)


# --- max_sensitivity ---------------------------------------------------------------------

def test_max_sensitivity_by_hand_linear_explainer():
    x = torch.randn(2, 3, 6, 6)
    lin = lambda z, t, model=None: z.sum(1)  # noqa: E731  e(x + d) - e(x) = d.sum(1)
    out = get("max_sensitivity").fn(None, x, lin(x, None), torch.zeros(2, dtype=torch.long),
                                    explain=lin, radius=0.1, n_samples=3, seed=4)
    ds = [per_sample_noise((3, 6, 6), 4, [0, 1], x.device, kind="uniform", stream=200 + j) * 0.1
          for j in range(3)]
    exp = torch.stack([d.sum(1).flatten(1).norm(dim=1) for d in ds], 1) / lin(x, None).flatten(1).norm(dim=1)[:, None]
    assert torch.allclose(out["max_sensitivity"], exp.max(1).values, atol=1e-6)
    assert torch.allclose(out["max_sensitivity_mean"], exp.mean(1), atol=1e-6)
    assert all((d.abs() <= 0.1).all() for d in ds)
    zero = get("max_sensitivity").fn(None, x, torch.zeros(2, 6, 6), torch.zeros(2, dtype=torch.long),
                                     explain=lambda z, t, model=None: torch.zeros(2, 6, 6))
    assert zero["max_sensitivity"].tolist() == [0.0, 0.0]


def test_max_sensitivity_matches_captum(tiny_cnn, images):
    captum_metrics = pytest.importorskip("captum.metrics")
    explain = gradient_explainer(tiny_cnn)
    t = torch.tensor([4, 3, 2, 1])
    n, r = 5, 0.05
    ours = get("max_sensitivity").fn(tiny_cnn, images, explain(images, t), t, full_batch(4),
                                     explain=explain, radius=r, n_samples=n, seed=11)["max_sensitivity"]
    # Captum perturbs repeat_interleave'd inputs (sample-major); give it the same draws.
    noise = torch.stack([per_sample_noise((3, 32, 32), 11, list(range(100, 104)), images.device,
                                          kind="uniform", stream=200 + j) * r for j in range(n)], 1)
    perturb = lambda inputs: inputs + noise.reshape(-1, 3, 32, 32)  # noqa: E731
    def captum_explain(inp, target):  # Captum passes and expects tuples
        return (explain(inp[0] if isinstance(inp, tuple) else inp, target),)

    theirs = captum_metrics.sensitivity_max(captum_explain, images,
                                            perturb_func=perturb, n_perturb_samples=n, target=t)
    assert (ours - theirs).abs().max() < 1e-5 and (ours > 0).all()


def test_missing_explain_is_a_config_error(images):
    with pytest.raises(ConfigError, match="needs explain"):
        get("max_sensitivity").fn(None, images, images[:, 0], torch.zeros(4, dtype=torch.long))


def test_empty_levels_and_malformed_shifts_are_config_errors(tiny_cnn, images):
    explain = lambda z, t, model=None: z.sum(1)  # noqa: E731
    h, t = images.sum(1), torch.zeros(4, dtype=torch.long)
    for name, kw in (("noise_stability", {"sigmas": ()}), ("rotation_stability", {"angles": ()}),
                     ("translation_stability", {"shifts": []})):
        with pytest.raises(ConfigError, match=f"{name}'.*must hold at least one value"):
            get(name).fn(tiny_cnn, images, h, t, explain=explain, **kw)
    with pytest.raises(ConfigError, match=r"shifts=\[\[0.5\]\] must be \[dy, dx\] pairs"):
        get("translation_stability").fn(tiny_cnn, images, h, t, explain=explain, shifts=[[0.5]])
