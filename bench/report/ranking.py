"""Which rank tests a report runs, and how methods compare with the controls.

Per (model, dataset) and shown metric: samples are the blocks. Across the report's
(model, dataset) pairs: each pair's leaderboard mean is a block, per metric and over all
shown metrics at once. Controls are the methods registered with
``MethodInfo.model_free`` (``random``, ``center``, ``edge``): they do not look at the
model, so a method that does not beat them has not shown it explains anything."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faithbench.errors import ConfigError
from faithbench.report import facts
from faithbench.report.board import Board
from faithbench.report.ranks import RankTest, rank_test


def controls(b: Board) -> set[str]:
    """Labels of the board's control methods (registered ``model_free``; a method not
    registered in this installation is not taken for one)."""
    out = set()
    for g in b.groups:
        try:
            if facts.method(g.method).model_free:
                out.add(g.label)
        except ConfigError:
            continue
    return out


def oracles(b: Board) -> set[str]:
    """Labels of the board's oracle maps (methods drawn from the ground truth, such as
    ``oracle``): kept apart with the controls, but not a bar the methods must clear."""
    out = set()
    for g in b.groups:
        try:
            if facts.method(g.method).oracle:
                out.add(g.label)
        except ConfigError:
            continue
    return out


def section_ranks(b: Board, alpha: float, correction: str) -> list[RankTest]:
    """One rank test per shown output with per-sample values, samples as blocks."""
    out = []
    for key in b.shown:
        t = rank_test(b.aligned(key), b.info(key).higher_is_better, key, "samples", alpha, correction)
        if t is not None:
            out.append(t)
    return out


def cell_blocks(boards: list[Board], keys: list[str]) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Leaderboard means as blocks: one row per existing (model, dataset, key) cell,
    one column per method label that every such block has.

    Returns:
        ([N, k] means indexed by "model/dataset/key", [N] higher_is_better, the labels
        left out because some block lacks them).
    """
    rows, hib = {}, []
    for b in boards:
        for key in keys:
            if key not in b.shown:
                continue
            rows[f"{b.model}/{b.dataset}/{key}"] = b.cells[b.cells["key"] == key].set_index("label")["mean"]
            hib.append(b.info(key).higher_is_better)
    if not rows:
        return pd.DataFrame(), np.zeros(0, bool), []
    wide = pd.DataFrame(rows).T
    full = [lab for lab in wide.columns if wide[lab].notna().all()]
    return wide[full], np.asarray(hib, bool), [lab for lab in wide.columns if lab not in full]


def across_ranks(boards: list[Board], alpha: float, correction: str,
                 problems: list[str]) -> list[RankTest]:
    """Rank tests with (model, dataset) pairs as blocks: one per shown metric that at
    least two pairs show, then one over every shown metric of every pair ("all")."""
    keys = sorted({k for b in boards for k in b.shown})
    out = []
    for key in [*keys, None]:
        wide, hib, left = cell_blocks(boards, keys if key is None else [key])
        if len(wide) < 2:
            continue
        what = "all" if key is None else key
        if left:
            problems.append(f"rank test across pairs ({what}): {', '.join(left)} left out, "
                            "not run on every pair")
        t = rank_test(wide, hib, what, "(model, dataset, metric) cells" if key is None
                      else "(model, dataset) pairs", alpha, correction)
        if t is not None:
            out.append(t)
    return out


def below_controls(b: Board, tests: list[RankTest], ctrl: set[str]) -> dict[str, list[str]]:
    """label -> shown outputs on which the method does not beat every control: its
    mean is not better than each control's, or (where per-sample values exist) its
    paired Wilcoxon test against a control is not significant at ``alpha`` in its
    favour. "Beats every control" is an intersection-union test (Berger 1982): it holds
    at level alpha when each of its tests rejects at alpha, with no correction within a
    method; each method's flag is its own claim, so none across methods either (a Holm
    family of every (method, control) test flagged integrated_gradients on the 24
    shapes scenes, 24/24 hits against 16/24 for `edge`, p = 0.005 raw)."""
    by_key = {t.key: t for t in tests}
    out: dict[str, list[str]] = {}
    if not ctrl:
        return out
    for key in b.shown:
        hib = b.info(key).higher_is_better
        means = b.cells[b.cells["key"] == key].set_index("label")["mean"]
        others, cs = sorted(set(means.index) - ctrl), sorted(ctrl & set(means.index))
        sig: dict[tuple[str, str], bool] = {}
        if key in by_key:
            t = by_key[key]
            pairs = t.pairs.set_index(["method", "versus"])
            fam = [(lab, c) for lab in others for c in cs if (lab, c) in pairs.index]
            sig = {f: bool(pairs.loc[f, "p"] < t.alpha and pairs.loc[f, "better"]) for f in fam}
        for lab in others:
            better = all(bool(means[lab] > means[c] if hib else means[lab] < means[c]) for c in cs)
            if not (better and all(sig.get((lab, c), True) for c in cs)):
                out.setdefault(lab, []).append(key)
    return out
