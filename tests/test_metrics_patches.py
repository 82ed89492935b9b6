"""Region perturbation and selectivity against Quantus 0.6 (one-channel input, a patch
grid that does not divide the image) and a naive loop on RGB input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics.patches import patch_ids, removal_image
from faithbench.types import Batch

region = get("region_perturbation").fn
selectivity = get("selectivity").fn


def cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).eval()


def grey():
    x = np.random.RandomState(0).rand(3, 1, 10, 13).astype(np.float32)
    a = np.random.RandomState(1).randn(3, 1, 10, 13).astype(np.float32)
    return x, a, np.array([0, 2, 1])


def quantus_metric(name: str, **kw):
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore")
    return getattr(quantus, name)(perturb_baseline=0.0, normalise=False, abs=False,
                                  disable_warnings=True, **kw)


def test_region_perturbation_matches_quantus():
    model = cnn(1)
    x, a, y = grey()
    ref = quantus_metric("RegionPerturbation", patch_size=4, regions_evaluation=5)(
        model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu")
    out = region(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), torch.from_numpy(y),
                 patch=4, regions=5, substitute="zero", ties="stable")
    curve = out["region_perturbation_curve"]
    assert np.allclose(curve[:, 1:].numpy(), np.array(ref), atol=1e-6)
    assert torch.equal(curve[:, 0], torch.zeros(3))
    assert torch.allclose(out["region_perturbation"], curve.mean(1))  # AOPC over k = 0..L


def test_selectivity_matches_quantus():
    model = cnn(1)
    x, a, y = grey()
    ref = quantus_metric("Selectivity", patch_size=4)(model=model, x_batch=x, y_batch=y, a_batch=a,
                                                      device="cpu")
    out = selectivity(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), torch.from_numpy(y),
                      patch=4, ties="stable")
    assert np.allclose(out["selectivity_curve"][:, 1:].numpy(), np.array(ref), atol=1e-6)


def test_region_perturbation_naive_loop_rgb():
    model = cnn()
    g = torch.Generator().manual_seed(3)
    x, h = torch.randn(2, 3, 7, 5, generator=g), torch.randn(2, 7, 5, generator=g)
    t = torch.tensor([1, 2])
    out = region(model, x, h, t, patch=3, regions=4, seed=9, ties="stable")
    sub = removal_image(x, "uniform", 9, [0, 1])
    assert (sub >= x.flatten(1).min(1).values.view(-1, 1, 1, 1)).all()
    # 7 rows pad to 9 (1 above), 5 columns to 6 (0 left): patches of the centred grid.
    for i in range(2):
        f = lambda z: torch.softmax(model(z[None]), 1)[0, t[i]].item()  # noqa: E731
        cells = {}
        for r in range(7):
            for c in range(5):
                cells.setdefault(((r + 1) // 3, c // 3), []).append((r, c))
        sums = {k: sum(float(h[i, r, c]) for r, c in v) for k, v in cells.items()}
        ranked = sorted(cells, key=lambda k: -sums[k])
        z, drops = x[i].clone(), [0.0]
        for k in ranked[:4]:
            for r, c in cells[k]:
                z[:, r, c] = sub[i, :, r, c]
            drops.append(f(x[i]) - f(z))
        assert np.allclose(out["region_perturbation_curve"][i].numpy(), drops, atol=1e-6)


def test_patch_grid():
    pid, n = patch_ids(7, 5, 3, torch.device("cpu"))
    assert n == 6 and pid.view(7, 5)[0, 0] == 0 and pid.view(7, 5)[2, 0] == 2
    assert pid.view(7, 5)[6, 4] == 5


def test_constant_nan_maps_and_batch_invariance():
    model = cnn()
    g = torch.Generator().manual_seed(4)
    x, h = torch.randn(3, 3, 8, 6, generator=g), torch.randn(3, 8, 6, generator=g)
    h[0] = 1.0
    h[1, 1, 1] = float("nan")
    t = torch.tensor([0, 1, 2])
    batch = Batch(images=x, labels=t, ids=list("abc"), index=torch.tensor([1, 2, 3]))
    for fn, name in ((region, "region_perturbation"), (selectivity, "selectivity")):
        full = fn(model, x, h, t, batch, patch=3, seed=2, chunk=5)[name]
        assert torch.isfinite(full[[0, 2]]).all() and torch.isnan(full[1])
        for i in (0, 2):
            one = fn(model, x[i:i + 1], h[i:i + 1], t[i:i + 1],
                     Batch(images=x[i:i + 1], labels=t[i:i + 1], ids=["abc"[i]], index=torch.tensor([1 + i])),
                     patch=3, seed=2)[name]
            assert one[0].item() == pytest.approx(full[i].item(), abs=1e-6)


def test_bad_substitute_is_refused():
    with pytest.raises(ConfigError, match="substitute"):
        region(cnn(), torch.randn(1, 3, 6, 6), torch.rand(1, 6, 6), torch.tensor([0]), substitute="black")
