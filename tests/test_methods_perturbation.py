"""Occlusion against Captum; RISE against a loop of the authors' mask recipe (skimage)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.methods.rise import RiseMasks

TARGET = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize("window,stride,fill", [(8, 4, 0.0), (7, 4, 0.3), (5, 5, -1.0), (32, 1, 0.0)])
def test_occlusion_matches_captum(tiny_cnn, images, window, stride, fill):
    # (7, 4): the last window sticks out of the 32 px image and is clipped, as in Captum.
    captum_attr = pytest.importorskip("captum.attr")
    ref = captum_attr.Occlusion(tiny_cnn).attribute(
        images, target=TARGET, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=fill)
    assert torch.equal(ref[:, 0], ref[:, 2])  # all channels occluded together: one map
    ours = get("occlusion").fn(tiny_cnn, images, TARGET, window=window, stride=stride, fill=fill,
                               chunk=17, activation="logit")
    torch.testing.assert_close(ours, ref[:, 0], rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_occlusion_of_probabilities_matches_captum_on_softmax_outputs(tiny_cnn, images):
    captum_attr = pytest.importorskip("captum.attr")
    ref = captum_attr.Occlusion(lambda x: tiny_cnn(x).softmax(1)).attribute(
        images, target=TARGET, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4))
    ours = get("occlusion").fn(tiny_cnn, images, TARGET, window=8, stride=4)
    torch.testing.assert_close(ours, ref[:, 0], rtol=1e-5, atol=1e-7)


def test_occlusion_rejects_windows_that_do_not_fit(tiny_cnn, images):
    with pytest.raises(ConfigError, match="window.*32"):
        get("occlusion").fn(tiny_cnn, images, TARGET, window=40)
    with pytest.raises(ConfigError, match="stride"):
        get("occlusion").fn(tiny_cnn, images, TARGET, window=4, stride=6)


def authors_masks(n: int, s: int, p: float, seed: int, size: int) -> torch.Tensor:
    """The RISE authors' recipe with skimage (their code), random draws taken as
    documented in RiseMasks: grid = rand(N, s, s) < p, then offsets = floor(rand(N, 2) * cell)."""
    resize = pytest.importorskip("skimage.transform").resize
    g = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, s, s, generator=g) < p).numpy().astype("float32")
    shift = torch.rand(n, 2, generator=g)
    cell = math.ceil(size / s)
    up = (s + 1) * cell
    masks = np.empty((n, size, size), dtype="float32")
    for i in range(n):
        dy, dx = int(shift[i, 0] * cell), int(shift[i, 1] * cell)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            big = resize(grid[i], (up, up), order=1, mode="reflect", anti_aliasing=False)
        masks[i] = big[dy : dy + size, dx : dx + size]
    return torch.from_numpy(masks)


def test_rise_masks_follow_the_authors_recipe():
    ref = authors_masks(50, 7, 0.4, 3, 32)
    ours = RiseMasks(50, 7, 0.4, 3, (32, 32), torch.device("cpu"))(0, 50)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert ours.min() >= 0 and ours.max() <= 1
    assert abs(float(ours.mean()) - 0.4) < 0.05


def test_rise_is_the_weighted_mask_average(tiny_cnn, images):
    n, p = 40, 0.5
    masks = authors_masks(n, 5, p, 11, 32)
    with torch.no_grad():
        ref = torch.zeros(4, 32, 32)
        for i in range(4):
            probs = tiny_cnn(images[i] * masks[:, None]).softmax(1)[:, TARGET[i]]
            ref[i] = (probs[:, None, None] * masks).sum(0) / (n * p)  # Eq. 6, E[M] = p
    ours = get("rise").fn(tiny_cnn, images, TARGET, n_masks=n, cells=5, keep_prob=p, seed=11, chunk=13)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_rise_rejects_bad_settings(tiny_cnn, images):
    with pytest.raises(ConfigError, match="keep_prob"):
        get("rise").fn(tiny_cnn, images, TARGET, n_masks=4, keep_prob=0.0)
