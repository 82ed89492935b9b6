"""The report's statistics against hand computations, enumerations and peers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from faithbench.errors import ConfigError
from faithbench.report import published
from faithbench.aggregate import curve_max
from faithbench.report.reliability import krippendorff_alpha, rowwise_spearman
from faithbench.report.render import esc
from faithbench.report.stats import adjust, benjamini_hochberg, holm, rank_biserial, ranks, wilcoxon

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders,
# 12 units, missing values; the paper gives alpha = 0.743 nominal, 0.815 ordinal,
# 0.849 interval and 0.797 ratio.
KRIPPENDORFF_2011 = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
                              [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
                              [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
                              [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]])


@pytest.mark.parametrize("level,published_alpha", [
    ("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_krippendorff_alpha_reproduces_the_published_example(level, published_alpha):
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == published_alpha


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_alpha_equals_the_krippendorff_package(level):
    kd = pytest.importorskip("krippendorff", reason="the krippendorff package is a test reference only")
    rng = np.random.default_rng(1)
    for _ in range(5):
        data = rng.integers(1, 6, (7, 15)).astype(float)
        data[rng.random(data.shape) < 0.2] = NAN
        assert krippendorff_alpha(data, level) == pytest.approx(
            kd.alpha(reliability_data=data, level_of_measurement=level), abs=1e-12)


def test_krippendorff_alpha_edge_cases():
    ranks_alike = np.tile([1.0, 2.0, 3.0], (5, 1))  # 5 samples rank 3 methods alike
    assert krippendorff_alpha(ranks_alike, "ordinal") == 1.0
    assert math.isnan(krippendorff_alpha(np.ones((3, 4))))  # no variation: undefined
    assert math.isnan(krippendorff_alpha(np.array([[1.0, NAN], [NAN, 2.0]])))  # nothing pairable
    with pytest.raises(ConfigError, match="unknown level of measurement 'rank'"):
        krippendorff_alpha(ranks_alike, "rank")  # type: ignore[arg-type]


def _exact_wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided exact p-value by enumerating every sign assignment (no ties, no zeros)."""
    r = stats.rankdata(np.abs(d))
    w = r[d > 0].sum()
    mu = r.sum() / 2
    null = [sum(ri for ri, s in zip(r, signs) if s) for signs in itertools.product([0, 1], repeat=len(r))]
    return float(np.mean(np.abs(np.array(null) - mu) >= abs(w - mu) - 1e-12))


def test_wilcoxon_exact_p_equals_the_enumerated_null_distribution():
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    b = a - rng.normal(0.5, 1.0, size=12)
    t = wilcoxon(a, b)
    d = a - b
    r = stats.rankdata(np.abs(d))
    assert t["statistic"] == min(r[d > 0].sum(), r[d < 0].sum())
    assert t["p"] == pytest.approx(_exact_wilcoxon_p(d), rel=1e-9)
    assert t["n"] == 12 and t["mean_diff"] == pytest.approx(d.mean())


def test_wilcoxon_with_ties_and_zeros_uses_the_tie_corrected_normal_approximation():
    a = np.array([1.0, 1, 1, 1, 0, 0, 1, 1, 1, 0, NAN, 1])
    b = np.array([0.0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, NAN])
    t = wilcoxon(a, b)
    d = (a - b)[np.isfinite(a - b)]
    nz = d[d != 0]  # 5 of +1, 1 of -1: all |d| tied at rank 3.5
    n = nz.size
    r = stats.rankdata(np.abs(nz))
    w_plus = r[nz > 0].sum()
    ties = np.unique(np.abs(nz), return_counts=True)[1]
    var = n * (n + 1) * (2 * n + 1) / 24 - (ties**3 - ties).sum() / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(var)
    assert t["n"] == 10  # pairs where both are defined (zeros are counted, then dropped)
    assert t["p"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert t["effect"] == pytest.approx((17.5 - 3.5) / 21)


def test_wilcoxon_degenerate_inputs():
    assert wilcoxon(np.ones(4), np.ones(4))["p"] == 1.0
    assert math.isnan(wilcoxon(np.array([NAN]), np.array([1.0]))["p"])


def test_rank_biserial_by_hand():
    # |d| ranks: 0.5->1, 1->2.5, -1->2.5, 3->4 ; W+ = 1 + 2.5 + 4, W- = 2.5
    assert rank_biserial(np.array([0.5, 1.0, -1.0, 3.0, 0.0])) == pytest.approx((7.5 - 2.5) / 10)


def test_holm_and_bh_by_hand_and_against_scipy():
    p = np.array([0.01, 0.04, 0.03, 0.005, NAN])
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (running max)
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02, NAN])
    # BH: sorted p*4/i: 0.02, 0.02, 0.04, 0.04 -> running min from the top
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02, NAN])
    rng = np.random.default_rng(3)
    q = rng.random(40) ** 3
    np.testing.assert_allclose(benjamini_hochberg(q), stats.false_discovery_control(q, method="bh"))
    assert (holm(q) >= benjamini_hochberg(q) - 1e-15).all() and (holm(q) <= 1).all()
    np.testing.assert_array_equal(adjust(q, "none"), q)
    with pytest.raises(ConfigError, match="unknown correction 'bonf'"):
        adjust(q, "bonf")


def test_ranks_follow_the_direction_and_share_ties():
    v = np.array([[0.2, 0.5, 0.5, NAN], [3.0, 1.0, 2.0, 4.0]])
    np.testing.assert_array_equal(ranks(v, True), [[3, 1.5, 1.5, NAN], [2, 4, 3, 1]])
    np.testing.assert_array_equal(ranks(v, False)[1], [3, 1, 2, 4])


def test_rowwise_spearman_equals_scipy_per_row():
    rng = np.random.default_rng(0)
    a, b = rng.random((20, 5)), rng.random((20, 5))
    b[3] = 1.0  # constant row: undefined
    got = rowwise_spearman(a, b)
    for i in range(20):
        want = stats.spearmanr(a[i], b[i]).statistic
        assert (math.isnan(got[i]) and math.isnan(want)) or got[i] == pytest.approx(want)


def test_curve_max_is_the_best_threshold_of_the_mean_curve():
    rng = np.random.default_rng(0)
    curve = (rng.random((30, 6)) < np.linspace(0.2, 0.8, 6)[::-1]).astype(float)
    curve[4] = NAN
    s = curve_max(curve, n_resamples=200)
    rows = curve[~np.isnan(curve).any(1)]
    assert s["mean"] == rows.mean(0).max() and s["n"] == 29
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]


def test_published_block_from_params_and_errors():
    params = {"published.source": "RISE paper", "published.values.r50.imagenet.rise.deletion": "0.1076",
              "published.values.r50.imagenet.grad_cam.deletion.value": "0.1232",
              "published.values.r50.imagenet.grad_cam.deletion.unverified": "True", "seed": "0"}
    df = published.from_params(params).set_index("method")
    assert df.loc["rise", "published"] == 0.1076 and not df.loc["rise", "unverified"]
    assert df.loc["grad_cam", "published"] == 0.1232 and df.loc["grad_cam", "unverified"]
    assert set(df["source"]) == {"RISE paper"}
    block = published.from_block({"values": {"r50": {"imagenet": {"rise": {"deletion": 0.1076}}}}})
    assert block["published"].tolist() == [0.1076]
    cells = pd.DataFrame({"label": ["rise"], "key": ["deletion"], "mean": [0.11],
                          "ci_low": [0.10], "ci_high": [0.12]})
    cmp = published.compare(df.reset_index(), cells, "r50", "imagenet").set_index("method")
    assert cmp.loc["rise", "diff"] == pytest.approx(0.11 - 0.1076) and cmp.loc["rise", "in_ci"]
    assert math.isnan(cmp.loc["grad_cam", "measured"])  # published, not run
    with pytest.raises(ConfigError, match="is not a number"):
        published.from_params({"published.values.a.b.c.d": "high"})
    with pytest.raises(ConfigError, match="expected published.values.<model>"):
        published.from_params({"published.values.a.b.c": "0.1"})


def test_latex_escaping():
    assert esc("grad_cam 95% & #1 {x} ~^\\", "tex") == (
        r"grad\_cam 95\% \& \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    assert esc("<a&b>", "html") == "&lt;a&amp;b&gt;" and esc("a|b", "md") == r"a\|b"


def test_wilcoxon_equals_scipy_on_many_cases():
    """The report's own signed-rank test (exact null by recursion, tie-corrected normal
    approximation) gives scipy's statistic and p-value on random differences with and
    without ties and zeros, on both sides of the 50-pair switch."""
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(2, 70))
        a = rng.normal(size=n)
        b = a - rng.normal(rng.normal(0, 0.5), 1.0, size=n)
        if trial % 3 == 1:  # ties and zeros
            a, b = np.round(a, 1), np.round(b, 1)
        d = (a - b)[(a - b) != 0]
        if d.size == 0:
            continue
        t = wilcoxon(a, b)
        exact = d.size <= 50 and np.unique(np.abs(d)).size == d.size
        ref = stats.wilcoxon(d, zero_method="wilcox", method="exact" if exact else "approx")
        assert t["statistic"] == pytest.approx(float(ref.statistic), abs=1e-9), trial
        assert t["p"] == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-15), trial
        r = stats.rankdata(np.abs(d))
        assert t["effect"] == pytest.approx((r[d > 0].sum() - r[d < 0].sum()) / r.sum()), trial
