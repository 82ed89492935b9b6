"""Image-optimisation visualisations do what their papers say: activation maximisation
raises its objective, inversion lowers the feature distance, DeepDream raises the layer
energy, style transfer lowers both losses; the helpers match independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from faithbench import models
from faithbench.visualize._optim import gaussian_blur, initial_image, pixel_box, total_variation
from faithbench.visualize.activation_maximisation import (class_objective, maximise_activation,
                                                          unit_objective)
from faithbench.visualize.deep_dream import dream, layer_energy
from faithbench.visualize.inversion import feature_distance, invert
from faithbench.visualize.style_transfer import StyleObjective, gram, transfer_style

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes():
    return models.load("shapes_cnn")


def _scene(spec, i: int) -> torch.Tensor:
    from faithbench import datasets

    return datasets.build("shapes", spec.preprocess, n=8)[i].image[None]


def test_gaussian_blur_matches_scipy():
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigma in (1.0, 2.0):
        ref = np.stack([[gaussian_filter(c, sigma, mode="nearest", truncate=3.0) for c in im]
                        for im in x.numpy()])
        assert np.allclose(gaussian_blur(x, sigma).numpy(), ref, atol=1e-10)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 0.0]]]])  # one 2x2 image: one (dx, dy) pair
    assert total_variation(x, beta=2.0).item() == pytest.approx(1.0 + 9.0)
    assert total_variation(x, beta=1.0).item() == pytest.approx(10**0.5, rel=1e-6)


def test_pixel_box_and_inits_are_valid_pixels(shapes):
    pre = shapes.preprocess
    lo, hi = pixel_box(pre, torch.zeros(1))
    assert torch.allclose(pre.denormalize(lo), torch.zeros(1, 3, 1, 1))
    assert torch.allclose(pre.denormalize(hi), torch.ones(1, 3, 1, 1))
    noise = initial_image((2, 3, 8, 8), pre, "noise", 0, CPU)
    assert ((noise >= lo) & (noise <= hi)).all() and noise.std() > 0
    assert torch.equal(noise, initial_image((2, 3, 8, 8), pre, "noise", 0, CPU))


def test_activation_maximisation_raises_unit_and_class_objectives(shapes):
    m, pre = shapes.model, shapes.preprocess
    units = unit_objective(m, "block2", torch.tensor([0, 1, 3]))
    x0 = initial_image((3, 3, 64, 64), pre, "noise", 0, CPU)
    x, hist = maximise_activation(units, x0, pre, steps=64)
    with torch.no_grad():
        before, after = units(x0), units(x)
    assert hist.shape == (64, 3)
    assert (after > 10 * before).all(), (before, after)  # ReLU outputs: a factor is meaningful
    lo, hi = pixel_box(pre, x)
    assert ((x >= lo - 1e-6) & (x <= hi + 1e-6)).all()
    classes = class_objective(m, torch.tensor([0, 2, 4]))
    x, _ = maximise_activation(classes, x0, pre, steps=64)
    with torch.no_grad():
        gain = classes(x) - classes(x0)
        prob = m(x).softmax(1)[torch.arange(3), torch.tensor([0, 2, 4])]
    assert (gain > 20).all(), gain  # logits of a few units at the start
    assert (prob > 0.9).all(), prob


def test_inversion_lowers_the_feature_distance(shapes):
    m, pre = shapes.model, shapes.preprocess
    ref = _scene(shapes, 0)
    x0 = initial_image(tuple(ref.shape), pre, "noise", 0, CPU)
    x, hist = invert(m, "block2", ref, x0, pre, steps=80)
    with torch.no_grad():
        from faithbench.visualize._layers import capture

        target = capture(m, ref, ["block2"])["block2"]
        d0 = feature_distance(m, "block2", x0, target).item()
        d1 = feature_distance(m, "block2", x, target).item()
    assert d1 < 0.2 * d0, (d0, d1)
    assert hist[0].item() == pytest.approx(d0, rel=1e-5)
    # the distance is Eq. 1 of the paper, checked on its own definition
    other = capture(m, x, ["block2"])["block2"]
    assert d1 == pytest.approx(((other - target) ** 2).sum().item() / (target**2).sum().item(), rel=1e-5)


def test_deep_dream_raises_the_layer_energy_and_keeps_size(shapes):
    m, pre = shapes.model, shapes.preprocess
    x = _scene(shapes, 1)
    out, hist = dream(m, "block2", x, pre, octaves=3, steps=6, lr=0.05)
    assert out.shape == x.shape and hist.shape == (18, 1)
    with torch.no_grad():
        e0, e1 = layer_energy(m, "block2", x).item(), layer_energy(m, "block2", out).item()
    assert e1 > 2 * e0, (e0, e1)


def test_gram_matches_a_loop():
    f = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    g = gram(f)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert g[b, i, j].item() == pytest.approx(float((f[b, i] * f[b, j]).sum()), rel=1e-5)


def test_style_transfer_lowers_content_and_style_losses(shapes):
    m, pre = shapes.model, shapes.preprocess
    content, style = _scene(shapes, 0), _scene(shapes, 3)
    obj = StyleObjective(m, content, style, "block3", ["block1", "block2", "block3"])
    x0 = initial_image(tuple(content.shape), pre, "noise", 0, CPU)
    x, hist = transfer_style(obj, x0, pre, steps=100, lr=0.05, style_weight=4e4)
    with torch.no_grad():
        start, end = obj(x0), obj(x)
    assert end.content.item() < 0.5 * start.content.item(), (start.content, end.content)
    assert end.style.item() < 0.5 * start.style.item(), (start.style, end.style)
    assert hist.content.shape == (100, 1)
    # zero loss at the targets themselves
    assert obj(content).content.item() == 0
    same = StyleObjective(m, content, content, "block3", ["block1"])
    assert same(content).style.item() == pytest.approx(0, abs=1e-9)


def test_optimisation_leaves_the_model_untouched(tiny_cnn):
    """Raw models may have parameters that require grad: nothing may land in .grad,
    and no hook may stay behind."""
    from faithbench.preprocess import Preprocess

    pre = Preprocess(size=32)
    x0 = initial_image((2, 3, 32, 32), pre, "noise", 0, CPU)
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    maximise_activation(class_objective(tiny_cnn, torch.tensor([0, 1])), x0, pre, steps=2)
    invert(tiny_cnn, "features.2", x0, x0.flip(0), pre, steps=2)
    dream(tiny_cnn, "features.2", x0, pre, octaves=2, steps=2)
    transfer_style(StyleObjective(tiny_cnn, x0, x0.flip(0), "features.2", ["features.0"]), x0, pre, steps=2)
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert all(not mod._forward_hooks for mod in tiny_cnn.modules())
    assert all(torch.equal(v, before[k]) for k, v in tiny_cnn.state_dict().items())
