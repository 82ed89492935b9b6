"""The metric report card: which metric can be trusted, per (model, dataset), scored
on five criteria from the runs' per-sample values.

1. Truth agreement (known-truth track only: runs whose model was verified by
   intervention, ``faithbench.truth``; masks alone are no truth): per scene, the Spearman correlation between
   the metric's ranking of the methods and the truth ranking, mean over scenes with a
   percentile-bootstrap CI. A map's truth score is its positive-mass share on the cue the
   model is verified to use minus its share on the other cue (``cue_mass -
   cue_mass_other``, docs/truth.md): 1 for ``oracle`` (the used cue's mask), -1 for
   ``oracle_other`` (the other cue's). Also the share of scenes where the metric ranks
   ``oracle`` above ``oracle_other`` and ranks ``oracle`` first (ties split).
2. Control separation: the share of (sample, control, method) triples in which the
   metric scores the method better than the control (``random``, ``center``, ``edge``:
   the methods registered model-free, oracles left out; ties count half), the same on the
   means, and the effect size (Cohen's d with pooled SD, mean over (control, method) pairs).
3. Reliability: Krippendorff's alpha (ordinal) of the method rankings with samples as
   coders (Tomsett et al., "Sanity Checks for Saliency Metrics", AAAI 2020: inter-rater
   reliability), and internal consistency: the per-sample Spearman correlation of the
   method rankings of the metric and of its own variants (the same entry run under
   another name with other parameters; its MoRF / LeRF outputs), mean over samples and
   variants (Tomsett et al.'s internal consistency).
4. Protocol sensitivity: Kendall's tau between the method rankings (by mean) of the
   metric and of each variant; the card shows the smallest, ``protocol`` lists each.
5. Cost: seconds and images forwarded through the model per sample, as the runner
   measured them (median over the runs).

A metric fails its own sanity checks (``fails``) when: the oracle is not ranked above the
wrong oracle on at least half the scenes, or the truth agreement's CI lies at or below 0
(``truth``); the methods beat the controls on fewer than half the sample comparisons
(``controls``); alpha or internal consistency is at or below 0 (``reliability``); one
protocol choice gives a tau below 0 (``protocol``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from faithbench import schema
from faithbench.aggregate import summarize
from faithbench.report.board import Board
from faithbench.report.ranking import controls as control_labels
from faithbench.report.ranking import oracles as oracle_labels
from faithbench.report.reliability import krippendorff_alpha, rowwise_spearman
from faithbench.report.stats import ranks

ORACLE, WRONG = "oracle", "oracle_other"
TRUTH, TRUTH_OTHER = "cue_mass", "cue_mass_other"
VERIFIED = "cue_verification"  # the runner's per-sample verification by intervention
COLUMNS = ["model", "dataset", "metric", "higher_is_better", "n_samples", "n_methods",
           "truth", "truth_ci_low", "truth_ci_high", "oracle_above_other", "oracle_first",
           "control_win_sample", "control_win_mean", "control_effect", "alpha",
           "consistency", "n_variants", "min_tau", "min_tau_choice", "seconds_per_sample",
           "forwards_per_sample", "fails"]
PROTOCOL_COLUMNS = ["model", "dataset", "metric", "variant", "choice", "tau", "consistency"]


@dataclass
class MetricCard:
    table: pd.DataFrame  # one row per (model, dataset, metric): COLUMNS
    protocol: pd.DataFrame  # one row per (model, dataset, metric, variant): PROTOCOL_COLUMNS
    notes: list[str] = field(default_factory=list)


def truth_agreement(values: pd.DataFrame, truth: pd.DataFrame, n_resamples: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """How well a metric's per-scene method ranking follows the truth ranking.

    Args:
        values: [N, M] the metric's values oriented so that higher is better (scenes x
            method labels).
        truth: [N, M] truth scores on the same scenes and labels (higher: more on the
            used cue); may hold the labels ``oracle`` and ``oracle_other``.
    Returns:
        ``truth`` (mean over scenes of the Spearman correlation; a scene on which the
        metric ties every method counts 0: it does not rank), ``truth_ci_low``,
        ``truth_ci_high``, ``oracle_above_other`` and ``oracle_first`` (shares of scenes,
        ties split; NaN without the oracles).
    """
    labs = [c for c in values.columns if c in truth.columns]
    ids = values.index.intersection(truth.index)
    v, t = values.loc[ids, labs].to_numpy(float), truth.loc[ids, labs].to_numpy(float)
    ok = np.isfinite(v).all(1) & np.isfinite(t).all(1)
    v, t = v[ok], t[ok]
    out = {"truth": math.nan, "truth_ci_low": math.nan, "truth_ci_high": math.nan,
           "oracle_above_other": math.nan, "oracle_first": math.nan}
    if len(labs) < 3 or not len(v):
        return out
    rho = rowwise_spearman(v, t)
    rho = np.where(np.ptp(v, axis=1) == 0, 0.0, rho)  # a metric that ties all: no ranking
    st = summarize(rho, n_resamples=n_resamples, seed=seed)
    out.update(truth=st["mean"], truth_ci_low=st["ci_low"], truth_ci_high=st["ci_high"])
    if ORACLE in labs:
        o = v[:, labs.index(ORACLE)]
        if WRONG in labs:
            w = v[:, labs.index(WRONG)]
            out["oracle_above_other"] = float(np.mean((o > w) + 0.5 * (o == w)))
        best = v.max(1)
        tied = (v == best[:, None]).sum(1)
        out["oracle_first"] = float(np.mean((o == best) / tied))
    return out


def control_separation(values: pd.DataFrame, controls: list[str], methods: list[str]) -> dict[str, float]:
    """How clearly a metric scores real methods above the controls.

    Args:
        values: [N, M] oriented values (higher is better), samples x labels.
        controls: the control labels; methods: the labels of real methods.
    Returns:
        ``control_win_sample``: share of (sample, control, method) triples with the
        method better (ties half); ``control_win_mean``: the same on the means;
        ``control_effect``: Cohen's d (method - control, pooled SD), mean over pairs.
    """
    cs = [c for c in controls if c in values.columns]
    ms = [m for m in methods if m in values.columns]
    v = values[cs + ms].dropna()
    if not cs or not ms or not len(v):
        return {"control_win_sample": math.nan, "control_win_mean": math.nan, "control_effect": math.nan}
    win, win_mean, d = [], [], []
    for c in cs:
        for m in ms:
            a, b = v[m].to_numpy(float), v[c].to_numpy(float)
            win.append(np.mean((a > b) + 0.5 * (a == b)))
            win_mean.append(float(a.mean() > b.mean()) + 0.5 * float(a.mean() == b.mean()))
            sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2) if len(a) > 1 else 0.0
            diff = a.mean() - b.mean()
            d.append(diff / sd if sd > 0 else (0.0 if diff == 0 else math.nan))
    return {"control_win_sample": float(np.mean(win)), "control_win_mean": float(np.mean(win_mean)),
            "control_effect": float(np.nanmean(d)) if np.isfinite(d).any() else math.nan}


def alpha(values: pd.DataFrame) -> float:
    """Krippendorff's alpha (ordinal) of the per-sample method rankings of oriented
    values [N, M] (samples as coders); NaN with fewer than 2 samples or methods."""
    v = values.dropna()
    if v.shape[0] < 2 or v.shape[1] < 2:
        return math.nan
    return krippendorff_alpha(ranks(v.to_numpy(float), True), "ordinal")


def consistency(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Mean over samples of the Spearman correlation of two oriented [N, M] tables'
    method rankings (samples where either side ties every method left out)."""
    labs = [c for c in a.columns if c in b.columns]
    ids = a.index.intersection(b.index)
    x, y = a.loc[ids, labs].to_numpy(float), b.loc[ids, labs].to_numpy(float)
    ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    if len(labs) < 3 or not ok.any():
        return math.nan
    r = rowwise_spearman(x[ok], y[ok])
    return float(np.nanmean(r)) if np.isfinite(r).any() else math.nan


def kendall_tau(a: pd.Series, b: pd.Series) -> float:
    """Kendall's tau-b between two method rankings (oriented means indexed by label)."""
    from scipy import stats

    labs = [lab for lab in a.index if lab in b.index and np.isfinite(a[lab]) and np.isfinite(b[lab])]
    if len(labs) < 3:
        return math.nan
    x, y = a[labs].to_numpy(float), b[labs].to_numpy(float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def fails(row: dict[str, object]) -> str:
    """The sanity checks a card row fails (module docstring), comma-separated."""
    def below(key: str, level: float, strict: bool = True) -> bool:
        x = row.get(key)
        return isinstance(x, float) and math.isfinite(x) and (x < level if strict else x <= level)

    out = []
    if below("oracle_above_other", 0.5) or below("truth_ci_high", 0.0, strict=False):
        out.append("truth")
    if below("control_win_sample", 0.5):
        out.append("controls")
    if below("alpha", 0.0, strict=False) or below("consistency", 0.0, strict=False):
        out.append("reliability")
    if below("min_tau", 0.0):
        out.append("protocol")
    return ", ".join(out)


def oriented(b: Board, key: str) -> pd.DataFrame:
    """[N, M] per-sample values of ``key`` with higher = better."""
    v = b.aligned(key)
    return v if b.info(key).higher_is_better else -v


def _means(b: Board, key: str) -> pd.Series:
    c = b.cells[b.cells["key"] == key].set_index("label")["mean"].astype(float)
    return c if b.info(key).higher_is_better else -c


def _choice(b: Board, base: str, variant: str) -> str:
    """What ``variant``'s node sets differently from ``base``'s, as ``k=v``."""
    p = b.groups[0].first.params
    own = sorted(k.split(".", 2)[2] for k in p if k.startswith(f"metric.{variant}."))
    diff = [f"{n}={p[f'metric.{variant}.{n}']}" for n in own
            if n != "name" and p.get(f"metric.{base}.{n}") != p[f"metric.{variant}.{n}"]]
    return ", ".join(diff) or "(same parameters)"


def _cost(b: Board, name: str, suffix: str) -> float:
    got = [g.first.metrics[name + suffix] for g in b.groups if name + suffix in g.first.metrics]
    return float(np.median(got)) if got else math.nan


def board_card(b: Board, n_resamples: int = 1000, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Card rows and protocol rows of one leaderboard: one card row per listed metric
    with per-sample values of its own score (a metric listed under another name is a
    variant of the entry's row when that entry is listed too, else a row of its own)."""
    listed: dict[str, str] = {}
    for g in b.groups:
        listed.update(schema.metric_aliases(g.first.params, g.metric_names))
    keys = {k.key for k in b.keys}
    orc = oracle_labels(b)
    ctrl = sorted(control_labels(b) - orc)
    real = [lab for lab in b.labels if lab not in orc and lab not in ctrl]
    truth = None
    verified = all(VERIFIED in g.frame.columns for g in b.groups)  # type: ignore[union-attr]
    if verified and TRUTH in keys and TRUTH_OTHER in keys:
        t, o = b.aligned(TRUTH), b.aligned(TRUTH_OTHER)
        truth = (t - o.loc[t.index.intersection(o.index), t.columns.intersection(o.columns)]).dropna(how="all")
    rows, proto = [], []
    for name in sorted(n for n, e in listed.items() if n == e or e not in listed):
        if name not in keys or b.aligned(name).empty:
            continue
        v = oriented(b, name)
        row: dict[str, object] = {"model": b.model, "dataset": b.dataset, "metric": name,
                                  "higher_is_better": b.info(name).higher_is_better,
                                  "n_samples": int(len(v.dropna())), "n_methods": int(v.shape[1])}
        if truth is not None:
            row.update(truth_agreement(v, truth, n_resamples, seed))
        row.update(control_separation(v, ctrl, real))
        row["alpha"] = alpha(v)
        cons, taus = [], []
        for var in sorted(a for a, e in listed.items() if e == name and a != name and a in keys):
            c, tau = consistency(v, oriented(b, var)), kendall_tau(_means(b, name), _means(b, var))
            cons.append(c)
            taus.append((tau, _choice(b, name, var)))
            proto.append({"model": b.model, "dataset": b.dataset, "metric": name, "variant": var,
                          "choice": taus[-1][1], "tau": tau, "consistency": c})
        if f"{name}_morf" in keys and f"{name}_lerf" in keys:  # Tomsett et al.: MoRF vs LeRF
            cons.append(consistency(oriented(b, f"{name}_morf"), oriented(b, f"{name}_lerf")))
        row["consistency"] = float(np.nanmean(cons)) if np.isfinite(cons).any() else math.nan
        row["n_variants"] = len(cons)
        finite = [(t, c) for t, c in taus if math.isfinite(t)]
        row["min_tau"], row["min_tau_choice"] = min(finite) if finite else (math.nan, "")
        row["seconds_per_sample"] = _cost(b, name, schema.COST_SECONDS)
        row["forwards_per_sample"] = _cost(b, name, schema.COST_FORWARDS)
        row["fails"] = fails(row)
        rows.append(row)
    return rows, proto


def metric_card(boards: list[Board], n_resamples: int = 1000, seed: int = 0) -> MetricCard:
    """The card of every (model, dataset) leaderboard."""
    rows, proto = [], []
    for b in boards:
        r, p = board_card(b, n_resamples, seed)
        rows += r
        proto += p
    return MetricCard(pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(proto, columns=PROTOCOL_COLUMNS))
