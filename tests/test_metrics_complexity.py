"""sparseness / complexity against naive loops, hand-computed maps and Quantus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faithbench.metrics import get

sp = get("sparseness").fn
cx = get("complexity").fn


def naive_gini(values):
    """Hurley & Rickard's form: 1 - 2 sum_k (a_(k) / |a|_1) (n - k + 1/2) / n."""
    a = sorted(abs(v) for v in values)
    n, s = len(a), sum(a)
    return 1 - 2 * sum(a[k - 1] / s * (n - k + 0.5) / n for k in range(1, n + 1))


def naive_entropy(values):
    s = sum(abs(v) for v in values)
    return -sum(abs(v) / s * math.log(abs(v) / s) for v in values if v != 0)


def test_match_naive_loops():
    h = torch.randn(5, 7, 9, generator=torch.Generator().manual_seed(0))
    h[2, :3] = 0
    s, c = sp(None, None, h, None)["sparseness"], cx(None, None, h, None)["complexity"]
    for i in range(5):
        vals = h[i].flatten().tolist()
        assert s[i].item() == pytest.approx(naive_gini(vals), abs=1e-6)
        assert c[i].item() == pytest.approx(naive_entropy(vals), abs=1e-5)


def test_by_hand():
    h = torch.zeros(4, 2, 2)
    h[0, 0, 0] = -3.0          # one pixel
    h[1] = 2.0                 # uniform
    h[2, 0] = 1.0              # two equal pixels of four
    h[3] = float("nan")
    s, c = sp(None, None, h, None)["sparseness"], cx(None, None, h, None)["complexity"]
    assert s[:3].tolist() == pytest.approx([0.75, 0.0, 0.5])
    assert c[:3].tolist() == pytest.approx([0.0, math.log(4), math.log(2)])
    assert torch.isnan(s[3]) and torch.isnan(c[3])
    zero = torch.zeros(1, 3, 3)  # all-zero counts as uniform
    assert sp(None, None, zero, None)["sparseness"].item() == 0.0
    assert cx(None, None, zero, None)["complexity"].item() == pytest.approx(math.log(9))


def test_quantus_sparseness_and_complexity():
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 12, 12, generator=g) * torch.tensor([1, 2, 5, 10, 0.5, 3.0]).view(-1, 1, 1)
    x = torch.zeros(6, 3, 12, 12)
    kw = dict(model=None, x_batch=x.numpy(), y_batch=np.zeros(6, dtype=int), a_batch=h[:, None].numpy())
    q_sp = np.asarray(quantus.Sparseness(disable_warnings=True)(**kw))
    q_cx = np.asarray(quantus.Complexity(disable_warnings=True)(**kw))
    assert np.abs(q_sp - sp(None, None, h, None)["sparseness"].numpy()).max() < 1e-5  # its +1e-7
    assert np.abs(q_cx - cx(None, None, h, None)["complexity"].numpy()).max() < 1e-5  # its log(p + 1e-12)
    # Documented differences: Quantus refuses an all-zero map (AssertionError); and it
    # normalises by the max over the whole batch before adding its epsilon, so a faint
    # map's Sparseness depends on the other maps in its batch.
    zero = dict(kw, a_batch=np.zeros((1, 1, 12, 12)), x_batch=x[:1].numpy(), y_batch=np.zeros(1, dtype=int))
    with pytest.raises(AssertionError, match="all equal to zero"):
        quantus.Complexity(disable_warnings=True)(**zero)
    faint = h.clone()
    faint[0] *= 1e-6
    together = np.asarray(quantus.Sparseness(disable_warnings=True)(**dict(kw, a_batch=faint[:, None].numpy())))
    alone = np.asarray(quantus.Sparseness(disable_warnings=True)(
        **dict(zero, a_batch=faint[:1, None].numpy())))
    assert abs(together[0] - alone[0]) > 1e-3
    ours = sp(None, None, faint, None)["sparseness"]
    assert ours[0].item() == pytest.approx(sp(None, None, faint[:1], None)["sparseness"].item(), abs=1e-7)
    assert ours[0].item() == pytest.approx(alone[0], abs=1e-5)
