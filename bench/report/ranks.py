"""Rank statistics of many methods over many blocks (samples of one (model, dataset),
or (model, dataset[, metric]) cells): Friedman's test, the Nemenyi critical difference
and the all-pairs Wilcoxon signed-rank tests with Holm's correction, and the cliques
of methods a critical-difference diagram joins by a bar (Demšar, JMLR 2006; the
Wilcoxon–Holm variant: Benavoli, Corani & Mangili, JMLR 2016)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from faithbench.report.stats import adjust, ranks, wilcoxon

PAIR_COLUMNS = ["method", "versus", "n", "statistic", "p", "p_adj", "effect", "mean_diff",
                "better", "significant"]


def friedman(values: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-square test that k methods rank alike over N blocks
    (``scipy.stats.friedmanchisquare``, tie-corrected).

    Args:
        values: [N, k] scores, one row per block, no NaN.
    Returns:
        (statistic, p); NaN for k < 3, N < 2, or when every block ties every method.
    """
    v = np.asarray(values, dtype=np.float64)
    n, k = v.shape
    if k < 3 or n < 2 or all(np.unique(row).size == 1 for row in v):
        return float("nan"), float("nan")
    res = stats.friedmanchisquare(*v.T)
    return float(res.statistic), float(res.pvalue)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks for the Nemenyi test (Demšar 2006, eq. 5):
    ``q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range
    quantile of k means and infinite degrees of freedom, divided by sqrt(2).

    Example:
        >>> round(nemenyi_cd(4, 10, 0.05), 3)  # Demsar's table: q_0.05 = 2.569 for k = 4
        1.483
    """
    if k < 2 or n < 1:
        return float("nan")
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def cliques(order: list[str], same: pd.DataFrame) -> list[list[str]]:
    """Maximal runs of methods, consecutive in mean-rank order, whose pairs are all
    not significantly different: the bars of a critical-difference diagram.

    Args:
        order: method labels, best mean rank first.
        same: [k, k] boolean frame indexed by label, True where a pair is not
            significantly different.
    Returns:
        runs of >= 2 labels, none contained in another, in order of their first member.
    """
    out: list[list[str]] = []
    last_end = -1
    row = [same.index.get_loc(lab) for lab in order]
    col = [same.columns.get_loc(lab) for lab in order]
    ok = same.to_numpy(dtype=bool)  # positional reads: .loc per pair dominated large reports
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(ok[row[m], col[j + 1]] for m in range(i, j + 1)):
            j += 1
        if j > i and j > last_end:  # a run ending where an earlier one ended is inside it
            out.append(order[i:j + 1])
            last_end = j
    return out


@dataclass
class RankTest:
    """Friedman test, Nemenyi CD and Wilcoxon cliques of one set of blocks."""

    key: str  # the metric output, or "all" for blocks over several metrics
    blocks: str  # what a block is: "samples" or "(model, dataset)" ...
    labels: list[str]  # methods, best mean rank first
    mean_ranks: pd.Series  # label -> mean rank (1 = best)
    n: int  # blocks used (those where every method is defined)
    statistic: float  # Friedman chi-square
    p: float
    cd: float  # Nemenyi critical difference at alpha
    alpha: float
    correction: str
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every ordered pair
    nemenyi: list[list[str]] = field(default_factory=list)
    wilcoxon: list[list[str]] = field(default_factory=list)
    _matrices: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    def matrix(self, column: str) -> pd.DataFrame:
        """[k, k] frame of one pairwise column (``effect``, ``p_adj``, ``significant``),
        rows and columns in mean-rank order; the diagonal is NaN."""
        if column not in self._matrices:  # each table format reads them again
            m = self.pairs.pivot(index="method", columns="versus", values=column)
            self._matrices[column] = m.reindex(index=self.labels, columns=self.labels)
        return self._matrices[column].copy()

    def row(self, controls: set[str] | frozenset[str] = frozenset()) -> dict[str, object]:
        """The test as one table row (``controls`` are marked in the mean ranks)."""
        name = lambda lab: f"{lab} (control)" if lab in controls else lab  # noqa: E731
        return {"key": self.key, "blocks": self.blocks, "n": self.n, "k": len(self.labels),
                "friedman": self.statistic, "p": self.p, "cd": self.cd,
                "mean_ranks": "; ".join(f"{name(lab)} {r:.2f}" for lab, r in self.mean_ranks.items())}


def rank_test(values: pd.DataFrame, higher_is_better: bool | np.ndarray, key: str, blocks: str,
              alpha: float = 0.05, correction: str = "holm") -> RankTest | None:
    """Rank statistics of the methods (columns) over the blocks (rows).

    Args:
        values: [N, k] scores, one column per method; rows with a NaN are left out.
        higher_is_better: the direction, or one per block ([N] booleans) when blocks
            come from several metrics; values are oriented so that higher is better.
    Returns:
        None when fewer than 2 methods or 2 complete blocks remain.
    """
    hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (len(values),))
    v = values.to_numpy(dtype=np.float64) * np.where(hib, 1.0, -1.0)[:, None]
    keep = np.isfinite(v).all(1)
    v = v[keep]
    labels = list(values.columns)
    if v.shape[0] < 2 or len(labels) < 2:
        return None
    mean_r = pd.Series(ranks(v, higher_is_better=True).mean(0), index=labels)
    order = list(mean_r.sort_values(kind="stable").index)
    stat, p = friedman(v)
    recs = []
    for a, b in itertools.combinations(range(len(labels)), 2):
        recs.append({"method": labels[a], "versus": labels[b], **wilcoxon(v[:, a], v[:, b])})
    half = pd.DataFrame(recs, columns=["method", "versus", "n", "statistic", "p", "effect", "mean_diff"])
    half["p_adj"] = adjust(half["p"].to_numpy(dtype=float), correction)  # one family: k(k-1)/2 tests
    flipped = half.rename(columns={"method": "versus", "versus": "method"})
    flipped["effect"], flipped["mean_diff"] = -half["effect"], -half["mean_diff"]
    pairs = pd.concat([half, flipped], ignore_index=True)
    pairs["better"] = pairs["effect"] > 0  # values are oriented: higher is better
    pairs["significant"] = pairs["p_adj"] < alpha
    cd = nemenyi_cd(len(labels), v.shape[0], alpha)
    diff = np.abs(mean_r.to_numpy()[:, None] - mean_r.to_numpy()[None, :])
    same_n = pd.DataFrame(diff < cd, index=labels, columns=labels)
    sig = pairs.pivot(index="method", columns="versus", values="significant")
    same_w = ~sig.reindex(index=labels, columns=labels).fillna(False).astype(bool)
    return RankTest(key, blocks, order, mean_r[order], int(v.shape[0]), stat, p, cd, alpha,
                    correction, pairs[PAIR_COLUMNS], cliques(order, same_n), cliques(order, same_w))

