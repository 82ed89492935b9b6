"""Per-sample analyses of one leaderboard: paired tests, Win %, metric reliability and
agreement. Methods are compared on the samples that all of them scored (joined on id)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faithbench.report.board import Board
from faithbench.report.reliability import krippendorff_alpha, rowwise_spearman
from faithbench.report.stats import adjust, ranks, wilcoxon

TEST_COLUMNS = ["key", "method", "reference", "versus", "n", "statistic", "p", "p_adj",
                "effect", "mean_diff", "better", "significant"]


def paired_tests(b: Board, control: str | None, correction: str, alpha: float) -> pd.DataFrame:
    """Wilcoxon signed-rank tests of every method against the best method of each shown
    column and against the ``control`` method (when present), on the samples both
    scored. One family per leaderboard: its p-values are adjusted together.

    Returns:
        one row per test: ``key``, ``method``, ``reference`` ("best" | "control"),
        ``versus`` (the other method), ``n`` pairs, ``statistic``, ``p``, ``p_adj``,
        ``effect`` (rank-biserial, positive: ``method`` scores higher), ``mean_diff``
        (method - versus), ``better`` (method better than versus, by the metric's
        direction and the sign of the effect), ``significant`` (p_adj < alpha).
    """
    recs = []
    for key in b.shown:
        info = b.info(key)
        cells = b.cells[b.cells["key"] == key]
        best = cells.loc[cells["best"], "label"].tolist()
        refs = [("best", best[0])] if best else []
        if control and control in cells["label"].tolist():
            refs.append(("control", control))
        for ref, other in refs:
            for lab in cells["label"]:
                if lab == other:
                    continue
                pair = b.aligned(key, [lab, other])
                if pair.shape[1] < 2:
                    continue
                t = wilcoxon(pair[lab].to_numpy(), pair[other].to_numpy())
                if t["n"] == 0:  # no per-sample values (a dataset-level aggregate)
                    continue
                sign = np.sign(t["effect"]) if info.higher_is_better else -np.sign(t["effect"])
                recs.append({"key": key, "method": lab, "reference": ref, "versus": other,
                             **t, "better": bool(sign > 0)})
    df = pd.DataFrame(recs, columns=[c for c in TEST_COLUMNS if c not in ("p_adj", "significant")])
    df["p_adj"] = adjust(df["p"].to_numpy(dtype=float), correction) if len(df) else []
    df["significant"] = df["p_adj"] < alpha
    return df[TEST_COLUMNS]


def win_rate(b: Board, key: str) -> pd.Series:
    """Win % (Grad-CAM++): the share of samples on which a method has the best value of
    ``key`` (lowest Average Drop) among the methods compared on those samples; a tie
    splits the win between the tied methods, so the shares add up to 100.

    Returns:
        label -> win % (empty when fewer than two methods have ``key``).
    """
    data = b.aligned(key).dropna()
    if data.shape[1] < 2 or data.shape[0] == 0:
        return pd.Series(dtype=float)
    v = data.to_numpy()
    best = v.max(1, keepdims=True) if b.info(key).higher_is_better else v.min(1, keepdims=True)
    won = (v == best).astype(float)
    share = won / won.sum(1, keepdims=True)
    return pd.Series(100.0 * share.mean(0), index=data.columns)


def reliability(b: Board) -> pd.DataFrame:
    """Krippendorff's alpha (ordinal) of the method rankings, every sample a coder
    ranking the methods (1 = best by the metric's direction, ties averaged), per shown
    column; samples missing any method's value are left out."""
    recs = []
    for key in b.shown:
        data = b.aligned(key).dropna()
        m, n = data.shape[1], data.shape[0]
        a = float("nan")
        if m >= 2 and n >= 2:
            a = krippendorff_alpha(ranks(data.to_numpy(), b.info(key).higher_is_better), "ordinal")
        recs.append({"key": key, "alpha": a, "n_samples": n, "n_methods": m})
    return pd.DataFrame(recs, columns=["key", "alpha", "n_samples", "n_methods"])


def agreement(b: Board, keys: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spearman agreement between metrics, both oriented so that +1 means agreement
    (a lower-is-better metric is negated).

    Returns:
        (ranking, sample): [K, K] matrices. ``ranking``: per sample, the Spearman
        correlation of the two metrics' rankings of the methods, averaged over samples
        (needs >= 3 methods; NaN otherwise). ``sample``: the Spearman correlation of
        the two metrics over all (sample, method) pairs.
    """
    keys = keys or b.shown
    sign = {k: 1.0 if b.info(k).higher_is_better else -1.0 for k in keys}
    mats = {k: b.aligned(k) for k in keys}
    rank_m = pd.DataFrame(np.eye(len(keys)), index=keys, columns=keys)
    samp_m = rank_m.copy()
    for i, a in enumerate(keys):
        for c in keys[i + 1:]:
            labs = [lab for lab in mats[a].columns if lab in mats[c].columns]
            ids = mats[a].index.intersection(mats[c].index)
            va = mats[a].loc[ids, labs].to_numpy() * sign[a]
            vc = mats[c].loc[ids, labs].to_numpy() * sign[c]
            ok = np.isfinite(va).all(1) & np.isfinite(vc).all(1)
            r = np.nan
            if len(labs) >= 3 and ok.any():
                per = rowwise_spearman(va[ok], vc[ok])
                r = float(np.nanmean(per)) if np.isfinite(per).any() else np.nan
            rank_m.loc[a, c] = rank_m.loc[c, a] = r
            samp_m.loc[a, c] = samp_m.loc[c, a] = _spearman(va.ravel(), vc.ravel())
    return rank_m, samp_m


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.all(x[ok] == x[ok][0]) or np.all(y[ok] == y[ok][0]):
        return float("nan")
    return float(stats.spearmanr(x[ok], y[ok]).statistic)
