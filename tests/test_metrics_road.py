"""ROAD: the batched noisy linear imputation against the paper's sparse direct solve
(pytorch-grad-cam carries the paper's ``imputations.py``), and the metric against
pytorch-grad-cam's ROAD at matched pixel counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._imputation import dissection_rank, linear_impute, noisy_linear_impute
from faithbench.metrics.road import noise_scale, removed_counts
from faithbench.preprocess import Preprocess
from faithbench.types import Batch

road = get("road").fn


def tiny_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes)).eval()


def paper_impute(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The paper's noisy linear imputer (scipy spsolve per image), noise off."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    imp = NoisyLinearImputer(noise=0.0)
    return torch.stack([imp(x[i], (~removed[i]).float()) for i in range(x.shape[0])])


@pytest.mark.parametrize("method", ["cg", "direct"])
@pytest.mark.parametrize("size", [(7, 11), (16, 9), (20, 20)])
def test_imputation_equals_sparse_direct_solve(size, method):
    h, w = size
    g = torch.Generator().manual_seed(h * w)
    x = torch.randn(4, 3, h, w, generator=g)
    removed = torch.rand(4, h, w, generator=g) < torch.tensor([0.1, 0.5, 0.9, 0.0]).view(-1, 1, 1)
    removed[3, 1:h - 1, 1:w - 1] = True  # one wide hole: the slowest case for CG
    removed[2, 0, 0] = removed[2, -1, -1] = True  # corners: fewer neighbours
    ours = linear_impute(x, removed, method)
    assert torch.allclose(ours, paper_impute(x, removed), atol=1e-5, rtol=0)
    assert torch.equal(ours[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])


@pytest.mark.parametrize("method", ["cg", "direct"])
def test_imputation_hand_computed(method):
    # One removed centre pixel: the weighted mean of its 8 neighbours (weights sum to 1).
    x = torch.arange(9.0).view(1, 1, 3, 3)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    expected = (1 + 3 + 5 + 7) / 6 + (0 + 2 + 6 + 8) / 12
    assert linear_impute(x, removed, method)[0, 0, 1, 1].item() == pytest.approx(expected, abs=1e-6)
    # A removed corner: weights of its 3 in-image neighbours, not renormalised (paper's code).
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    corner = (1 / 6 * 1 + 1 / 6 * 3 + 1 / 12 * 4) / (1 / 6 + 1 / 6 + 1 / 12)
    assert linear_impute(x, removed, method)[0, 0, 0, 0].item() == pytest.approx(corner, abs=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (2, 9), (7, 11), (64, 64), (5, 224)])
def test_dissection_rank_orders_every_pixel_separators_last(size):
    h, w = size
    rank = dissection_rank(h, w)
    assert np.array_equal(np.sort(rank), np.arange(h * w))
    if h >= 9 and w >= 9:  # the first cut (the middle row of the longer side) is numbered last
        grid = rank.reshape(h, w)
        cut = grid[h // 2] if h >= w else grid[:, w // 2]
        assert set(cut.tolist()) == set(range(h * w - cut.size, h * w))


def test_imputation_refuses_an_image_with_no_kept_pixel():
    with pytest.raises(ConfigError, match="at least one kept pixel"):
        linear_impute(torch.randn(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))


def test_noise_lands_on_removed_pixels_only():
    x = torch.randn(1, 3, 6, 5)
    removed = torch.zeros(1, 6, 5, dtype=torch.bool)
    removed[0, 2:4, 1:4] = True
    eps = torch.randn(1, 3, 6, 5)
    out = noisy_linear_impute(x, removed, eps)
    assert torch.allclose(out - linear_impute(x, removed), eps * removed[:, None])


def gradcam_scores(model, x, cam, target, morf: bool, percentile: int) -> np.ndarray:
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    metric = (ROADMostRelevantFirst if morf else ROADLeastRelevantFirst)(percentile)
    metric.perturbation.imputer.noise = 0.0
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    return metric(x, cam.numpy(), targets, model, return_diff=False)


def gradcam_removed(cam: np.ndarray, percentile: int) -> int:
    """Pixels pytorch-grad-cam removes at ``percentile``: those not below it."""
    return int((cam >= np.percentile(cam, percentile)).sum())


def test_road_matches_pytorch_grad_cam():
    model = tiny_cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 10, 14, generator=g)  # non-square
    cam = torch.rand(3, 10, 14, generator=g)  # distinct values: no ties
    target = torch.tensor([0, 3, 1])  # per-sample targets
    n = 10 * 14
    for q in (20, 50, 90):
        # grad-cam's MoRF keeps the pixels below the q-th percentile of the map; LeRF
        # those below the q-th percentile of 1 - map: its counts, as fractions for ours.
        k_morf = gradcam_removed(cam[0].numpy(), q)
        k_lerf = gradcam_removed(1 - cam[0].numpy(), q)
        assert removed_counts(n, [k_morf / n, k_lerf / n]) == [k_morf, k_lerf]
        morf = road(model, x, cam, target, fractions=[k_morf / n], noise=0.0, ties="stable")
        lerf = road(model, x, cam, target, fractions=[k_lerf / n], noise=0.0, ties="stable")
        ref_morf = gradcam_scores(model, x, cam, target, True, q)
        ref_lerf = gradcam_scores(model, x, cam, target, False, q)
        assert np.allclose(morf["road_morf_curve"][:, 0].numpy(), ref_morf, atol=1e-5)
        assert np.allclose(lerf["road_lerf_curve"][:, 0].numpy(), ref_lerf, atol=1e-5)
        if k_morf == k_lerf:  # ROADCombined's difference (without its 1/2)
            assert np.allclose(morf["road"].numpy(), ref_lerf - ref_morf, atol=1e-5)


def paper_road_score(model, img, expl, target, th_p, remove):
    """The paper's ImputedDataset.__getitem__ for one image (road/imputed_dataset.py),
    without its 1e-4 random tie-breaker (the maps here have no ties), then the
    softmax probability of the target as road_eval reads it."""
    mask = expl.numpy()[..., None].sum(-1)  # rescale_channel: sum over channels, min-max
    mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-5)
    width, height = img.size(-2), img.size(-1)
    order = torch.argsort(torch.tensor(mask.reshape(-1, 1)), axis=0, descending=True)
    bitmask = torch.ones(width * height, dtype=torch.uint8)
    coords = order[:int(width * height * th_p)] if remove else order[int(width * height * th_p):]
    bitmask[coords] = 0
    imputed = paper_impute(img[None], (bitmask.reshape(width, height) == 0)[None])[0]
    return torch.softmax(model(imputed[None]), 1)[0, target].item()


def test_road_matches_the_papers_code():
    # The paper's LeRF at th_p keeps the top th_p share: LeRF removing f is th_p = 1 - f.
    model = tiny_cnn()
    g = torch.Generator().manual_seed(4)
    x, h = torch.randn(2, 3, 8, 10, generator=g), torch.randn(2, 8, 10, generator=g)
    target = torch.tensor([1, 2])
    out = road(model, x, h, target, fractions=[0.25, 0.5], noise=0.0, ties="stable")
    for i in range(2):
        for k, f in enumerate([0.25, 0.5]):
            morf = paper_road_score(model, x[i], h[i], int(target[i]), f, True)
            lerf = paper_road_score(model, x[i], h[i], int(target[i]), 1 - f, False)
            assert out["road_morf_curve"][i, k].item() == pytest.approx(morf, abs=1e-5)
            assert out["road_lerf_curve"][i, k].item() == pytest.approx(lerf, abs=1e-5)


def test_paper_fractions_and_counts():
    out = road(tiny_cnn(), torch.randn(2, 3, 10, 10), torch.rand(2, 10, 10), torch.tensor([0, 1]),
               noise=0.0)
    assert torch.allclose(out["road_morf_curve_x"][0], torch.arange(1, 10) / 10)
    assert removed_counts(100, [0.1 * i for i in range(1, 10)]) == [10 * i for i in range(1, 10)]
    assert out["road"].shape == (2,) and out["road_lerf_curve"].shape == (2, 9)


@pytest.mark.parametrize("ties", ["random", "stable"])
def test_constant_map_scores_zero_without_noise(ties):
    # Equal values: MoRF and LeRF take the tied pixels in the same order, so the same
    # pixels go at every fraction and the curves coincide.
    out = road(tiny_cnn(), torch.randn(2, 3, 8, 12), torch.ones(2, 8, 12), torch.tensor([1, 2]),
               noise=0.0, ties=ties, seed=3)
    assert torch.equal(out["road_morf_curve"], out["road_lerf_curve"])
    assert torch.equal(out["road"], torch.zeros(2))


def test_non_finite_map_gives_nan_row():
    h = torch.rand(2, 8, 8)
    h[1, 0, 0] = float("nan")
    out = road(tiny_cnn(), torch.randn(2, 3, 8, 8), h, torch.tensor([0, 1]), noise=0.0)
    assert torch.isfinite(out["road"][0]) and torch.isnan(out["road"][1])
    assert torch.isnan(out["road_morf_curve"][1]).all()


def batch_of(x: torch.Tensor, index: list[int]) -> Batch:
    return Batch(images=x, labels=torch.zeros(len(index), dtype=torch.long),
                 ids=[str(i) for i in index], index=torch.tensor(index))


def test_batch_and_chunk_invariance_with_noise():
    model, pre = tiny_cnn(), Preprocess()
    g = torch.Generator().manual_seed(2)
    x, h = torch.randn(3, 3, 9, 7, generator=g), torch.rand(3, 9, 7, generator=g)
    h[2] = 0.5  # a constant map: the random tie order is drawn per sample
    target = torch.tensor([2, 0, 1])
    kw = dict(preprocess=pre, seed=5, fractions=[0.2, 0.6])
    full = road(model, x, h, target, batch_of(x, [10, 11, 12]), chunk=3, **kw)
    for i in range(3):
        one = road(model, x[i:i + 1], h[i:i + 1], target[i:i + 1], batch_of(x[i:i + 1], [10 + i]),
                   chunk=64, **kw)
        for key in ("road", "road_morf_curve", "road_lerf_curve"):
            assert torch.allclose(one[key][0], full[key][i], atol=1e-6), key
    again = road(model, x, h, target, batch_of(x, [10, 11, 12]), chunk=3, **kw)
    assert torch.equal(again["road"], full["road"])
    other = road(model, x, h, target, batch_of(x, [10, 11, 12]), chunk=3, **{**kw, "seed": 6})
    assert not torch.equal(other["road_morf_curve"], full["road_morf_curve"])


def test_noise_is_in_pixel_units():
    pre = Preprocess()
    x = torch.zeros(1, 3, 4, 4)
    scale = noise_scale(0.01, pre, x).flatten()
    assert torch.allclose(scale, 0.01 / torch.tensor(pre.std), atol=1e-7)
    with pytest.raises(ConfigError, match="noise=0.01.*preprocess"):
        road(tiny_cnn(), torch.randn(1, 3, 6, 6), torch.rand(1, 6, 6), torch.tensor([0]))


@pytest.mark.parametrize("fractions", [[1.0], [], [0.5, -0.1]])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        road(tiny_cnn(), torch.randn(1, 3, 6, 6), torch.rand(1, 6, 6), torch.tensor([0]),
             fractions=fractions, noise=0.0)
