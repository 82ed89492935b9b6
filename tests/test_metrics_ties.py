"""Order of equal-valued pixels in deletion / insertion / abpc (``ties``): RISE's numpy
order against numpy itself, the seeded random order against a transcription, raster
order, and the curves they give against a naive RISE loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._common import generator
from faithbench.metrics._order import TIE_STREAM, order_of
from faithbench.types import Batch

SIZES = [(224, 224), (64, 64), (37, 53)]
KINDS = ["zeros64", "levels", "cam", "fp16"]


def tied_maps(kind: str, size: tuple[int, int], b: int = 3) -> torch.Tensor:
    """[b,H,W] float32 maps full of exact ties, like the ones methods produce."""
    h, w = size
    g = torch.Generator().manual_seed(1000 * KINDS.index(kind) + 7 * h + w)
    if kind == "zeros64":  # a ReLU'd map with 64% exact zeros (Grad-CAM on shapes)
        m = torch.rand(b, h, w, generator=g)
        return torch.where(m < 0.64, torch.zeros(()), m)
    if kind == "levels":  # quantised to 8 levels
        return (torch.rand(b, h, w, generator=g) * 8).floor() / 8
    if kind == "cam":  # a 7x7 CAM upsampled bilinearly, then ReLU'd: zeros plus a ramp
        cam = torch.randn(b, 1, 7, 7, generator=g)
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0].relu()
    if kind == "fp16":  # what the old fp16 heatmap cache stored
        return torch.rand(b, h, w, generator=g).half().float()
    raise ValueError(kind)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_rise_ties_are_numpys_own_argsort(kind, size):
    maps = tied_maps(kind, size)
    n = size[0] * size[1]
    assert any(len(np.unique(m.numpy())) < n for m in maps)  # the case needs ties
    ours = order_of(maps, "morf", "rise")
    for i, sal in enumerate(maps.numpy()):
        # eclique/RISE evaluation.py, CausalMetric.single_run / evaluate:
        expected = np.flip(np.argsort(sal.reshape(-1, n), axis=1), axis=-1)[0]
        np.testing.assert_array_equal(ours[i].numpy(), expected)
        np.testing.assert_array_equal(ours[i].numpy(), np.flip(np.argsort(sal.reshape(-1))))
    # LeRF under RISE's rule: RISE's MoRF order of the negated map.
    lerf = order_of(maps, "lerf", "rise")
    for i, sal in enumerate(maps.numpy()):
        np.testing.assert_array_equal(lerf[i].numpy(), np.flip(np.argsort(-sal.reshape(-1))))
    # numpy's order among ties is not raster order: a stable sort would fail this test.
    assert not torch.equal(ours, order_of(maps, "morf", "stable"))


@pytest.mark.parametrize("size", SIZES[1:])
@pytest.mark.parametrize("kind", KINDS)
def test_stable_and_random_ties_against_a_transcription(kind, size):
    maps, ids, seed = tied_maps(kind, size), [5, 17, 9], 3
    flat = maps.flatten(1).numpy()
    pos = np.arange(flat.shape[1])
    stable = order_of(maps, "morf", "stable")
    rand = order_of(maps, "morf", "random", seed=seed, ids=ids)
    rand_lerf = order_of(maps, "lerf", "random", seed=seed, ids=ids)
    for i, sample in enumerate(ids):
        np.testing.assert_array_equal(stable[i].numpy(), np.lexsort((pos, -flat[i])))
        np.testing.assert_array_equal(order_of(maps, "lerf", "stable")[i].numpy(),
                                      np.lexsort((pos, flat[i])))
        # random: the pixels' places in one seeded permutation break the ties.
        perm = torch.randperm(flat.shape[1], generator=generator(seed, sample, torch.device("cpu"),
                                                                 TIE_STREAM)).numpy()
        priority = np.empty_like(perm)
        priority[perm] = pos
        np.testing.assert_array_equal(rand[i].numpy(), np.lexsort((priority, -flat[i])))
        np.testing.assert_array_equal(rand_lerf[i].numpy(), np.lexsort((priority, flat[i])))
    assert not torch.equal(rand, stable)
    other = order_of(maps, "morf", "random", seed=seed + 1, ids=ids)
    assert not torch.equal(rand, other)  # the seed moves the order among ties ...
    assert torch.equal(maps.flatten(1).gather(1, rand), maps.flatten(1).gather(1, other))  # ... only


def test_random_ties_are_uniform():
    """Every pixel of a constant 2x2 map comes first about equally often over samples."""
    first = order_of(torch.zeros(800, 2, 2), "morf", "random", seed=0, ids=list(range(800)))[:, 0]
    counts = torch.bincount(first, minlength=4)
    assert counts.min() > 150 and counts.max() < 250, counts  # 200 expected, sd ~12


def test_constant_map_orders_and_abpc(tiny_cnn, images):
    flat, t = torch.zeros(4, 32, 32), torch.tensor([0, 1, 2, 3])
    for ties in ["stable", "random"]:  # ties kept in one order in both directions
        assert torch.equal(order_of(flat, "morf", ties), order_of(flat, "lerf", ties))
        assert (get("abpc").fn(tiny_cnn, images, flat, t, step=0.25, ties=ties)["abpc"] == 0).all()
    with pytest.raises(ConfigError, match="ties 'numpy'.*Valid choices: random, rise, stable"):
        get("deletion").fn(tiny_cnn, images, flat, t, ties="numpy")


def naive_deletion(model, img, sal, target, order, step_px):
    """RISE's CausalMetric.single_run (deletion, zero substrate) as a plain loop over
    steps, given RISE's pixel order; returns (auc by RISE's auc(), scores)."""
    cur, n = img.clone().view(3, -1), sal.size
    scores = []
    with torch.no_grad():
        for i in range(n // step_px + 1):
            scores.append(model(cur.view(1, *img.shape)).softmax(1)[0, target].item())
            cur[:, torch.from_numpy(order[i * step_px:(i + 1) * step_px].copy())] = 0
    arr = np.array(scores)
    return (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (len(arr) - 1), scores


@pytest.mark.parametrize("kind", ["zeros64", "levels"])
def test_rise_ties_reproduce_the_naive_rise_loop(tiny_cnn, kind):
    maps = tied_maps(kind, (28, 28))
    x = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([0, 2, 4])
    ours = get("deletion").fn(tiny_cnn, x, maps, t, ties="rise")
    raster = get("deletion").fn(tiny_cnn, x, maps, t, ties="stable")
    for b in range(3):
        order = np.flip(np.argsort(maps[b].numpy().reshape(-1)))
        auc, scores = naive_deletion(tiny_cnn, x[b], maps[b].numpy(), int(t[b]), order, 28)
        assert ours["deletion_curve"][b].tolist() == pytest.approx(scores, abs=1e-5)
        assert ours["deletion"][b].item() == pytest.approx(auc, abs=1e-5)
    assert not torch.allclose(ours["deletion_curve"], raster["deletion_curve"], atol=1e-4)


@pytest.mark.parametrize("name", ["deletion", "insertion", "abpc"])
def test_random_ties_do_not_depend_on_the_batch(tiny_cnn, images, name):
    h = tied_maps("levels", (32, 32), 4)
    t = torch.tensor([1, 2, 3, 4])
    batch = Batch(images=images, labels=t, ids=list("abcd"), index=torch.tensor([10, 11, 12, 13]),
                  orig_size=torch.full((4, 2), 32.0), scale=torch.ones(4, 2), offset=torch.zeros(4, 2))
    full = get(name).fn(tiny_cnn, images, h, t, batch, seed=3, step=0.1, ties="random")
    for i in [3, 1]:
        one = get(name).fn(tiny_cnn, images[i:i + 1], h[i:i + 1], t[i:i + 1],
                           batch.select(torch.tensor([i])), seed=3, step=0.1, ties="random")
        for k in full:
            assert torch.allclose(full[k][i], one[k][0], atol=1e-6), k
