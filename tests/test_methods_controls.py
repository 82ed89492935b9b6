"""The control maps: centre Gaussian, seeded noise, Sobel edges."""

from __future__ import annotations

import pytest
import torch

from faithbench.methods import get

TARGET = torch.tensor([0, 1, 2, 3])


def test_center_is_a_centred_gaussian(images):
    out = get("center").fn(None, images[:, :, :, :20], TARGET, sigma=0.25)
    assert out.shape == (4, 32, 20)
    assert torch.equal(out[0], out[3])
    s = 0.25 * 20
    # Value at pixel (y, x) relative to the centre ((H-1)/2, (W-1)/2) = (15.5, 9.5).
    assert out[0, 15, 9] == pytest.approx(float(torch.exp(torch.tensor(-(0.25 + 0.25) / (2 * s * s)))))
    assert out[0, 0, 0] == pytest.approx(float(torch.exp(torch.tensor(-(15.5**2 + 9.5**2) / (2 * s * s)))))
    assert torch.equal(out[0], out[0].flip(0)) and torch.equal(out[0], out[0].flip(1))


def test_random_differs_per_image_but_not_per_batch(images):
    same = images.clone()
    same[1] = images[0]
    out = get("random").fn(None, same, TARGET, seed=4)
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    assert 0 <= out.min() and out.max() < 1
    assert abs(float(out.mean()) - 0.5) < 0.02


def test_edge_is_skimage_sobel_up_to_its_scale(images):
    filters = pytest.importorskip("skimage.filters")
    ours = get("edge").fn(None, images, TARGET)
    for i in range(4):
        gray = images[i].mean(0).double().numpy()
        # skimage's Sobel kernels are ours / 4 and it returns sqrt((gx^2 + gy^2) / 2).
        ref = torch.from_numpy(filters.sobel(gray, mode="nearest")).float() * 4 * 2**0.5
        torch.testing.assert_close(ours[i], ref, rtol=1e-5, atol=1e-5)


def test_edge_of_a_step_is_on_the_step():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0
    out = get("edge").fn(None, x, TARGET[:1])
    assert torch.equal(out[0].nonzero()[:, 1].unique(), torch.tensor([3, 4]))
