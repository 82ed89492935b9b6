"""One leaderboard: the methods run on one (model, dataset), their per-sample rows,
and mean with bootstrap CI, rank and best mark per metric output."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from faithbench import schema
from faithbench.aggregate import CLASS_MEAN, Aggregation
from faithbench.errors import ConfigError
from faithbench.report import facts
from faithbench.report.merge import CORE, Group
from faithbench.report.stats import ranks

log = logging.getLogger("faithbench.report")


@dataclass(frozen=True)
class KeyInfo:
    """Registry metadata of one output column."""

    key: str
    metric: str  # the metric that outputs it
    higher_is_better: bool
    aggregate: str  # the name of that metric's aggregation
    primary: bool  # the metric's own score (key == metric name)
    aggregation: Aggregation  # MetricInfo.aggregate of that metric, as the runner calls it


def key_info(key: str, metric_names: list[str], aliases: dict[str, str] | None = None) -> KeyInfo | None:
    """Direction and aggregation of output ``key`` from the registry entry of the metric
    (among ``metric_names``; ``aliases``: listed name -> entry, for a metric listed under
    another name) that declares it; None for plain values and unknown keys."""
    for name in sorted(metric_names, key=len, reverse=True):
        entry = (aliases or {}).get(name, name)
        try:
            info = facts.metric(entry)
        except ConfigError:
            continue
        d = info.direction(entry, schema.entry_output(name, entry, key))
        if d is not None:
            return KeyInfo(key, name, bool(d), info.aggregate.name, key == name, info.aggregate)
    return None


def logged_class_space(g: Group, k: KeyInfo) -> int | None:
    """The label-space size a ``class_mean`` output is averaged over when its run set
    ``metric.<name>.class_mean: label_space`` (as the runner logged it in
    ``<key>_classes``); None: over the classes present."""
    if k.aggregation is not CLASS_MEAN:
        return None
    rule = g.first.params.get(f"metric.{k.metric}.class_mean", "present")
    if rule != "label_space":
        return None
    got = g.first.metrics.get(schema.stat_key(k.key, "classes"))
    if got is None:
        raise ConfigError(f"run {g.first.run_id}: {k.key} is a label-space class mean but the "
                          f"run logged no {schema.stat_key(k.key, 'classes')}")
    return int(got)


@dataclass
class Board:
    """Leaderboard of one (model, dataset)."""

    model: str
    dataset: str
    groups: list[Group]
    keys: list[KeyInfo] = field(default_factory=list)  # all scored outputs
    shown: list[str] = field(default_factory=list)  # columns of the table
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per (label, key)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per label
    _memo: dict = field(default_factory=dict, repr=False)  # what -> (frame, value): ``cached``
    _orders: list = field(default_factory=list, repr=False)  # the distinct id arrays

    @property
    def labels(self) -> list[str]:
        return [g.label for g in self.groups]

    @property
    def slug(self) -> str:
        import re

        return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.model}__{self.dataset}")

    def frame(self, label: str) -> pd.DataFrame:
        return next(g.frame for g in self.groups if g.label == label)  # type: ignore[return-value]

    def info(self, key: str) -> KeyInfo:
        return next(k for k in self.keys if k.key == key)

    def aligned(self, key: str, labels: list[str] | None = None) -> pd.DataFrame:
        """[N, M] per-sample values of ``key``: one column per label that has it, one row
        per sample id that every such label scored (inner join on id)."""
        cols = {}
        for lab in labels or self.labels:
            c = self._column(lab, key)
            if c is not None:
                cols[lab] = c
        if not cols:
            return pd.DataFrame()
        ids, same = next(iter(cols.values()))[0], next(iter(cols.values()))[2]
        if all(c[2] == same for c in cols.values()):  # the same ids in the same order: no join
            return pd.DataFrame({lab: c[1] for lab, c in cols.items()}, index=pd.Index(ids))
        return pd.concat({lab: pd.Series(v, index=i) for lab, (i, v, _) in cols.items()},
                         axis=1, join="inner")

    def _column(self, label: str, key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(ids, float values, id-order class) of ``key`` in ``label``'s frame: labels of
        one id-order class have equal ``ids`` arrays."""
        def make() -> tuple[np.ndarray, np.ndarray, int] | None:
            if key not in f.columns:
                return None
            ids = f["id"].to_numpy()
            same = next((n for n, known in enumerate(self._orders) if known.shape == ids.shape
                         and (known == ids).all()), None)
            if same is None:
                self._orders.append(ids)
                same = len(self._orders) - 1
            return self._orders[same], f[key].to_numpy(dtype=float), same

        f = self.frame(label)
        return self.cached(("column", label, key), f, make)

    def cached(self, what: tuple, frame: pd.DataFrame | None, make: Callable[[], Any]) -> Any:
        """``make()``, computed once while ``frame`` is the frame it was made from (the
        tables and every method's view read the same columns again)."""
        hit = self._memo.get(what)
        if hit is None or hit[0] is not frame:
            hit = self._memo[what] = (frame, make())
        return hit[1]

    def release(self) -> None:
        """Drop the per-sample frames (the board's tables stay): the report keeps one
        leaderboard's frames in memory at a time."""
        for g in self.groups:
            g.frame = None
        self._memo.clear()
        self._orders.clear()


def make_board(model: str, dataset: str, groups: list[Group], want: list[str] | None,
               n_resamples: int, seed: int | None) -> Board:
    """Statistics of every scored output of every group (method row) of one table.

    Args:
        want: output keys for the table's columns; default: every metric's own score.
        seed: bootstrap seed; None uses each run's own ``seed`` param (as the runner did).
    """
    b = Board(model, dataset, sorted(groups, key=lambda g: g.label))
    names = sorted(set().union(*(g.metric_names for g in groups)))
    aliases = {}
    for g in groups:
        aliases.update(schema.metric_aliases(g.first.params, g.metric_names))
    cols = sorted(set().union(*(set(g.frame.columns) for g in groups)) - set(CORE))  # type: ignore[union-attr]
    for c in cols:
        k = key_info(c, names, aliases)
        if k is not None and not schema.is_curve(c):
            b.keys.append(k)
    known = [k.key for k in b.keys]
    if want:
        bad = [w for w in want if w not in known]
        if bad:
            raise ConfigError(f"unknown output {bad[0]!r} for {model}/{dataset}. "
                              f"Valid choices: {', '.join(known)}.")
        b.shown = list(want)
    else:
        b.shown = [n for n in names if n in known]
    recs = []
    for g in b.groups:
        f = g.frame
        s = int(g.first.params.get("seed", 0)) if seed is None else seed
        for k in b.keys:
            if k.key not in f.columns:  # type: ignore[union-attr]
                continue
            st = k.aggregation(f, k.key, n_resamples, s, num_classes=logged_class_space(g, k))
            recs.append({"label": g.label, "method": g.method, "key": k.key, **st})
    cells = pd.DataFrame(recs, columns=["label", "method", "key", "mean", "ci_low", "ci_high", "n",
                                        "classes"])
    cells["rank"], cells["best"] = np.nan, False
    for k in b.keys:
        sel = cells["key"] == k.key
        r = ranks(cells.loc[sel, "mean"].to_numpy(), k.higher_is_better)
        cells.loc[sel, "rank"] = r
        cells.loc[sel, "best"] = r == np.nanmin(r) if np.isfinite(r).any() else False
    b.cells = cells.reset_index(drop=True)
    shown = cells[cells["key"].isin(b.shown)]
    mean_rank = shown.groupby("label")["rank"].mean()
    b.rows = pd.DataFrame({
        "label": b.labels, "method": [g.method for g in b.groups],
        "n_samples": [len(g.frame) for g in b.groups],  # type: ignore[arg-type]
        "mean_rank": [mean_rank.get(lab, np.nan) for lab in b.labels]})
    return b
