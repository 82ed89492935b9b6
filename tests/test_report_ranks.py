"""Rank statistics (Friedman, Nemenyi critical difference, Wilcoxon–Holm cliques)
against scipy, the textbook formulas and hand-made cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from faithbench.report.ranks import cliques, friedman, nemenyi_cd, rank_test
from faithbench.report.stats import holm, wilcoxon

# Demšar (2006), table 5(a): q_0.05 of the two-tailed Nemenyi test for k = 2..10
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]


def test_friedman_equals_scipy_and_the_textbook_formula():
    rng = np.random.default_rng(0)
    v = rng.random((12, 5)) + np.arange(5) * 0.2  # no ties
    stat, p = friedman(v)
    ref = stats.friedmanchisquare(*v.T)
    assert (stat, p) == (pytest.approx(ref.statistic, rel=1e-12), pytest.approx(ref.pvalue, rel=1e-12))
    n, k = v.shape
    r = stats.rankdata(v, axis=1).sum(0)  # Demšar eq. 3, rank sums R_j
    chi2 = 12 / (n * k * (k + 1)) * (r**2).sum() - 3 * n * (k + 1)
    assert stat == pytest.approx(chi2, rel=1e-12)
    assert p == pytest.approx(stats.chi2.sf(chi2, k - 1), rel=1e-9)


def test_rank_test_uses_complete_blocks_and_its_direction():
    rng = np.random.default_rng(1)
    v = pd.DataFrame(rng.random((15, 4)), columns=list("abcd"))
    v.iloc[:, 0] += 0.4  # a scores higher
    v.iloc[3, 2] = np.nan  # that block is left out
    t = rank_test(v, True, "m", "samples")
    full = v.dropna().to_numpy()
    ref = stats.friedmanchisquare(*full.T)
    assert t.n == 14 and t.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert t.p == pytest.approx(ref.pvalue, rel=1e-12)
    mean_r = stats.rankdata(-full, axis=1).mean(0)  # 1 = best = highest
    assert t.mean_ranks.to_dict() == pytest.approx(dict(zip("abcd", mean_r)))
    assert t.labels == [x for _, x in sorted(zip(mean_r, "abcd"))] and t.labels[0] == "a"
    low = rank_test(-v, False, "m", "samples")  # the same scores as lower-is-better
    assert low.labels == t.labels and low.statistic == pytest.approx(t.statistic)
    assert low.mean_ranks.to_dict() == pytest.approx(t.mean_ranks.to_dict())
    assert rank_test(v.iloc[:1], True, "m", "samples") is None


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_cd_equals_the_formula_with_the_studentized_range_quantile(k):
    n = 17
    q = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    assert nemenyi_cd(k, n, 0.05) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-12)
    assert abs(q - DEMSAR_Q05[k - 2]) <= 1e-3  # the published table (rounded; off by one digit at k = 3, 7)


def test_pairwise_wilcoxon_holm_over_the_k_choose_2_pairs():
    rng = np.random.default_rng(2)
    v = pd.DataFrame(rng.normal(size=(30, 4)) + [0.0, 0.1, 0.8, 1.5], columns=list("abcd"))
    t = rank_test(v, False, "m", "samples")  # lower is better: a is best
    pairs = list(itertools.combinations("abcd", 2))
    p = np.array([wilcoxon(v[a].to_numpy(), v[b].to_numpy())["p"] for a, b in pairs])
    want = dict(zip(pairs, holm(p)))
    got = t.pairs.set_index(["method", "versus"])
    for (a, b), pa in want.items():
        assert got.loc[(a, b), "p_adj"] == pytest.approx(pa) and got.loc[(b, a), "p_adj"] == pytest.approx(pa)
        assert got.loc[(a, b), "effect"] == pytest.approx(-got.loc[(b, a), "effect"])
        d = v[a] - v[b]  # oriented: lower values are better, so a better when d < 0
        assert bool(got.loc[(a, b), "better"]) == (stats.rankdata(d.abs())[d < 0].sum()
                                                   > stats.rankdata(d.abs())[d > 0].sum())
    assert bool(got.loc[("a", "d"), "significant"]) and bool(got.loc[("a", "d"), "better"])
    m = t.matrix("effect")
    assert list(m.index) == t.labels and np.isnan(np.diag(m.to_numpy())).all()


def test_cliques_are_maximal_runs_of_indistinct_methods():
    order = list("abcde")
    same = pd.DataFrame(True, index=order, columns=order)
    for x, y in [("a", "c"), ("a", "d"), ("a", "e"), ("b", "d"), ("b", "e"), ("c", "e")]:
        same.loc[x, y] = same.loc[y, x] = False
    assert cliques(order, same) == [["a", "b"], ["b", "c"], ["c", "d"], ["d", "e"]]
    same.loc["b", "d"] = same.loc["d", "b"] = True
    assert cliques(order, same) == [["a", "b"], ["b", "c", "d"], ["d", "e"]]
    all_distinct = pd.DataFrame(np.eye(5, dtype=bool), index=order, columns=order)
    assert cliques(order, all_distinct) == []


def test_nemenyi_cliques_follow_the_critical_difference():
    rng = np.random.default_rng(3)
    v = pd.DataFrame(rng.normal(size=(40, 5)) + [0, 0.1, 0.2, 1.5, 1.6], columns=list("abcde"))
    t = rank_test(v, True, "m", "samples")
    r = t.mean_ranks
    for group in t.nemenyi:
        assert r[group].max() - r[group].min() < t.cd
    joined = {x for g in t.nemenyi for x in g}
    assert t.labels[0] in joined  # e and d are close, and so are a, b, c
    assert not any({"e", "a"} <= set(g) for g in t.nemenyi)
