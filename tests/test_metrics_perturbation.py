"""deletion / insertion / abpc against a naive RISE loop, hand-computed toys and Quantus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._perturb import gaussian_kernel, schedule
from faithbench.types import Batch


class ObjectFraction(nn.Module):
    """Class 0's softmax probability is the share of the 4 object pixels (the 2x2 block
    at rows 1-2, cols 1-2 of a 4x4 image) whose channel 0 is still 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x[:, 0, 1:3, 1:3].flatten(1).sum(1) / 4
        return torch.stack([f, 1 - f], 1).log()


def object_image() -> torch.Tensor:
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0, 1:3, 1:3] = 1
    return x


def object_map(invert: bool = False) -> torch.Tensor:
    h = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5
    h[:, 1:3, 1:3] += 1  # the object is strictly more salient than the background
    return -h if invert else h


def run(name: str, *args, **kw):
    return get(name).fn(*args, **kw)


# --- hand-computed toy cases -------------------------------------------------------------

def test_deletion_toy_by_hand():
    x, t = object_image(), torch.tensor([0])
    # Faithful map: the 4 object pixels go first, one per step (step = 1/16): the score
    # falls 1, .75, .5, .25, 0 over x in [0, 1/4] then stays 0: area 1/2 * 1/4 = 0.125.
    good = run("deletion", ObjectFraction(), x, object_map(), t, step=1 / 16)
    assert good["deletion"].item() == pytest.approx(0.125, abs=1e-6)
    assert good["deletion_curve"][0, :6].tolist() == pytest.approx([1, .75, .5, .25, 0, 0])
    # Inverted map: the object goes last: 0.75 at score 1, then a triangle of 0.125.
    bad = run("deletion", ObjectFraction(), x, object_map(invert=True), t, step=1 / 16)
    assert bad["deletion"].item() == pytest.approx(0.875, abs=1e-6)


def test_insertion_and_abpc_toy_by_hand():
    x, t = object_image(), torch.tensor([0])
    ins = run("insertion", ObjectFraction(), x, object_map(), t, step=1 / 16, substitute="zero")
    assert ins["insertion"].item() == pytest.approx(0.875, abs=1e-6)
    ab = run("abpc", ObjectFraction(), x, object_map(), t, step=1 / 16)
    assert ab["abpc_morf"].item() == pytest.approx(0.125, abs=1e-6)
    assert ab["abpc_lerf"].item() == pytest.approx(0.875, abs=1e-6)
    assert ab["abpc"].item() == pytest.approx(0.75, abs=1e-6)
    # Two pixels per step: points at x = 0, 1/8, ..., 1 -> still exact for a linear fall.
    two = run("deletion", ObjectFraction(), x, object_map(), t, step=1 / 8)
    assert two["deletion_curve"].shape == (1, 9)
    assert two["deletion"].item() == pytest.approx(0.125, abs=1e-6)


def test_constant_map_with_stable_ties_gives_raster_order_and_zero_abpc():
    x, t = object_image(), torch.tensor([0])
    flat = torch.zeros(1, 4, 4)
    out = run("deletion", ObjectFraction(), x, flat, t, step=1 / 16, ties="stable")
    # Raster order deletes (1,1),(1,2) at steps 6,7 and (2,1),(2,2) at steps 10,11.
    exp = [1.0] * 6 + [.75, .5, .5, .5, .25, 0, 0, 0, 0, 0, 0]
    assert out["deletion_curve"][0].tolist() == pytest.approx(exp)
    assert run("abpc", ObjectFraction(), x, flat, t, step=1 / 16, ties="stable")["abpc"].item() == 0.0
    neg_zero = torch.full((1, 4, 4), -0.0)
    again = run("deletion", ObjectFraction(), x, neg_zero, t, step=1 / 16, ties="stable")
    assert torch.equal(again["deletion_curve"], out["deletion_curve"])


# --- naive per-sample loop of the RISE definition ----------------------------------------

def naive_curve(model, img, sal, target, start, finish, step_px):
    """RISE's CausalMetric.single_run as a plain loop over steps (the step images are
    scored in one forward at the end only to keep the test fast)."""
    n = sal.numel()
    order = sorted(range(n), key=lambda j: (-float(sal.view(-1)[j]), j))
    cur = start.clone().view(3, -1)
    n_steps = (n + step_px - 1) // step_px
    imgs, xs = [], []
    for i in range(n_steps + 1):
        imgs.append(cur.clone().view(*img.shape))
        xs.append(min(i * step_px, n) / n)
        idx = torch.tensor(order[i * step_px:(i + 1) * step_px], dtype=torch.long)
        if len(idx):
            cur[:, idx] = finish.view(3, -1)[:, idx]
    with torch.no_grad():
        scores = model(torch.stack(imgs)).softmax(1)[:, target].tolist()
    auc = sum((xs[i + 1] - xs[i]) * (scores[i] + scores[i + 1]) / 2 for i in range(n_steps))
    return auc, scores


def blur_rise(img):
    k = torch.from_numpy(_scipy_kernel()).float()
    return nn.functional.conv2d(img[None], k.expand(3, 1, 11, 11), padding=5, groups=3)[0]


def _scipy_kernel():
    from scipy.ndimage import gaussian_filter
    d = np.zeros((11, 11))
    d[5, 5] = 1
    return gaussian_filter(d, 5)


@pytest.mark.parametrize("size", [28, 32])  # 28: RISE's exact 28-pixel steps; 32: partial last step
def test_deletion_and_insertion_match_naive_loop(tiny_cnn, size):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(3, 3, size, size, generator=g)
    h = torch.randn(3, size, size, generator=g)
    t = torch.tensor([0, 3, 4])
    step_px = schedule(size * size, 1 / 28)[1].item()
    dele = run("deletion", tiny_cnn, x, h, t, chunk=50)
    ins = run("insertion", tiny_cnn, x, h, t, chunk=50)
    assert dele["deletion_curve"].shape == (3, 29)
    for b in range(3):
        auc_d, sc_d = naive_curve(tiny_cnn, x[b], h[b], t[b], x[b], torch.zeros_like(x[b]), step_px)
        auc_i, sc_i = naive_curve(tiny_cnn, x[b], h[b], t[b], blur_rise(x[b]), x[b], step_px)
        assert dele["deletion_curve"][b].tolist() == pytest.approx(sc_d, abs=1e-5)
        assert dele["deletion"][b].item() == pytest.approx(auc_d, abs=1e-5)
        assert ins["insertion_curve"][b].tolist() == pytest.approx(sc_i, abs=1e-5)
        assert ins["insertion"][b].item() == pytest.approx(auc_i, abs=1e-5)
    if size == 28:  # uniform steps: RISE's own auc() formula applies
        c = dele["deletion_curve"][0]
        rise_auc = (c.sum() - c[0] / 2 - c[-1] / 2) / (c.numel() - 1)
        assert dele["deletion"][0].item() == pytest.approx(rise_auc.item(), abs=1e-6)


def test_rise_schedule_and_blur_kernel():
    counts = schedule(224 * 224, 1 / 28)
    assert counts.numel() == 29 and counts[1] == 224 * 8 and counts[-1] == 224 * 224
    assert torch.allclose(gaussian_kernel(11, 5.0), torch.from_numpy(_scipy_kernel()).float(), atol=1e-7)
    assert schedule(16, 1.0).tolist() == [0, 16]


# --- invariances, determinism, degenerate input -----------------------------------------

@pytest.mark.parametrize("name,sub", [("deletion", "zero"), ("insertion", "blur"),
                                      ("deletion", "mean"), ("insertion", "noise"), ("abpc", "zero")])
def test_batch_and_chunk_invariance(tiny_cnn, images, name, sub):
    h = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(2)).round(decimals=1)
    t = torch.tensor([1, 2, 3, 4])
    batch = Batch(images=images, labels=t, ids=list("abcd"), index=torch.tensor([10, 11, 12, 13]),
                  orig_size=torch.full((4, 2), 32.0), scale=torch.ones(4, 2), offset=torch.zeros(4, 2))
    # 11 points per sample, chunks of 4: chunk boundaries cut through samples.
    full = run(name, tiny_cnn, images, h, t, batch, substitute=sub, chunk=1000, seed=3, step=0.1)
    for i in range(4):
        one = run(name, tiny_cnn, images[i:i + 1], h[i:i + 1], t[i:i + 1],
                  batch.select(torch.tensor([i])), substitute=sub, chunk=4, seed=3, step=0.1)
        for k in full:
            assert torch.allclose(full[k][i], one[k][0], atol=1e-5), k


def test_noise_substitute_is_seeded(tiny_cnn, images):
    h, t = torch.randn(4, 32, 32), torch.zeros(4, dtype=torch.long)
    a = run("deletion", tiny_cnn, images, h, t, substitute="noise", seed=1)["deletion_curve"]
    b = run("deletion", tiny_cnn, images, h, t, substitute="noise", seed=1)["deletion_curve"]
    c = run("deletion", tiny_cnn, images, h, t, substitute="noise", seed=2)["deletion_curve"]
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_nan_map_gives_nan_row_only(tiny_cnn, images):
    h = torch.randn(4, 32, 32)
    h[1, 3, 3] = float("nan")
    t = torch.zeros(4, dtype=torch.long)
    out = run("insertion", tiny_cnn, images, h, t)
    assert torch.isnan(out["insertion"][1]) and torch.isnan(out["insertion_curve"][1]).all()
    assert torch.isfinite(out["insertion"][[0, 2, 3]]).all()
    zero = run("deletion", tiny_cnn, images, torch.zeros(4, 32, 32), t)
    assert torch.isfinite(zero["deletion"]).all()


def test_sigmoid_activation(images):
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    out = run("deletion", lin, images, torch.randn(4, 32, 32), torch.zeros(4, dtype=torch.long),
              activation="sigmoid", step=0.5)
    with torch.no_grad():
        first = lin(images)[:, 0].sigmoid()
    assert torch.allclose(out["deletion_curve"][:, 0], first, atol=1e-6)


def test_bad_parameters_are_config_errors(tiny_cnn, images):
    h, t = torch.randn(4, 32, 32), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="substitute 'black'.*Valid choices: blur, mean, noise, zero"):
        run("deletion", tiny_cnn, images, h, t, substitute="black")
    with pytest.raises(ConfigError, match="step=0"):
        run("deletion", tiny_cnn, images, h, t, step=0)
    with pytest.raises(ConfigError, match="activation"):
        run("insertion", tiny_cnn, images, h, t, activation="softplus")
    with pytest.raises(ConfigError, match="blur_kernel=10 must be an odd positive integer"):
        run("insertion", tiny_cnn, images, h, t, blur_kernel=10)
    with pytest.raises(ConfigError, match="blur_sigma=0"):
        run("abpc", tiny_cnn, images, h, t, substitute="blur", blur_sigma=0)


# --- peer: Quantus PixelFlipping ---------------------------------------------------------

def test_quantus_pixel_flipping_curve_and_its_black_baseline(tiny_cnn):
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 24, 24, generator=g)
    h = torch.randn(4, 24, 24, generator=g)  # distinct values: no tie-breaking question
    t = torch.tensor([0, 1, 2, 3])
    ours = run("deletion", tiny_cnn, x, h, t, step=1 / 12)["deletion_curve"]
    # Quantus flips channel-features, 3 per pixel, but checks features_in_step against
    # H*W only: 144 features = 48 pixels = 1/12 of 24x24. Its curve starts after step 1.
    a = h[:, None].expand(-1, 3, -1, -1).numpy()
    common = dict(x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a, device="cpu")
    pf = quantus.PixelFlipping(features_in_step=144, perturb_baseline=0.0,
                               normalise=False, disable_warnings=True)
    theirs = np.asarray(pf(model=tiny_cnn, **common))
    assert theirs.shape == (4, 12)
    assert np.abs(theirs - ours[:, 1:].numpy()).max() < 1e-5
    # Documented difference: Quantus "black" is each image's minimum, not 0 (the mean
    # colour in normalised space), so its curve differs from ours.
    black = quantus.PixelFlipping(features_in_step=144, perturb_baseline="black",
                                  normalise=False, disable_warnings=True)
    assert np.abs(np.asarray(black(model=tiny_cnn, **common)) - ours[:, 1:].numpy()).max() > 1e-3
    auc = quantus.PixelFlipping(features_in_step=144, perturb_baseline=0.0, normalise=False,
                                return_auc_per_sample=True, disable_warnings=True)
    try:
        auc(model=tiny_cnn, **common)
    except AttributeError as e:  # NumPy >= 2.4 removed np.trapz, which Quantus 0.6 calls
        assert "trapz" in str(e)
