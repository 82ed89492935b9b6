"""``faithbench.leaderboard``: the report's leaderboard of one (model, dataset) made from
a per-sample frame (``faithbench.evaluate``'s) instead of MLflow runs, by the report's
own functions (``make_board``, ``section``), so means, bootstrap CIs, ranks, paired
Wilcoxon tests and rank tests are the numbers ``faithbench report`` gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from faithbench import schema
from faithbench.errors import ConfigError


@dataclass
class Leaderboard:
    """One (model, dataset)'s leaderboard.

    Attributes:
        table: one row per method: ``n_samples``, per shown output ``<key>``,
            ``<key>_ci_low``, ``<key>_ci_high``, ``<key>_rank``, then ``mean_rank``.
        cells: the report's long table (label, key, mean, ci_low, ci_high, n, rank, best).
        tests: paired Wilcoxon tests against the best method and the control.
        section: the report's full ``Section`` (rank tests, reliability, agreement...).
    """

    table: pd.DataFrame
    cells: pd.DataFrame
    tests: pd.DataFrame
    section: Any

    def markdown(self, digits: int = 3) -> str:
        """The leaderboard as the report's markdown table."""
        from faithbench.report.render import leaderboard, markdown_table

        s = self.section
        return markdown_table(*leaderboard(s.board, s.win, digits, "md", s.controls, s.below))


def _groups(frame: pd.DataFrame, metric_names: list[str], seed: int) -> list[Any]:
    from faithbench import schema
    from faithbench.report.merge import Group, label_groups
    from faithbench.report.runs import RunInfo

    groups = []
    for method, rows in frame.groupby("method", sort=True):
        tags = {schema.MODEL: str(rows["model"].iloc[0]), schema.METHOD: str(method),
                schema.DATASET: str(rows["dataset"].iloc[0])}
        run = RunInfo(str(method), "", 0, tags, {"seed": str(seed), "metrics": repr(metric_names)})
        g = Group(str(method), [run])
        ok = rows[rows["status"] == "ok"].drop(columns=["model", "dataset", "method"])
        g.frame = ok.sort_values(["index", "id"], kind="stable").reset_index(drop=True)
        groups.append(g)
    return label_groups(groups)


def _wide(cells: pd.DataFrame, rows: pd.DataFrame, shown: list[str]) -> pd.DataFrame:
    out = rows.set_index("label")[["n_samples"]].copy()
    for key in shown:
        c = cells[cells["key"] == key].set_index("label")
        for stat, col in (("mean", key), ("ci_low", schema.stat_key(key, "ci_low")),
                          ("ci_high", schema.stat_key(key, "ci_high")), ("rank", f"{key}_rank")):
            out[col] = c[stat]
    out["mean_rank"] = rows.set_index("label")["mean_rank"]
    out.index.name = "method"
    return out.sort_values("mean_rank")


def leaderboard(frame: pd.DataFrame, metrics: list[str] | None = None, *,
                control: str | None = "random", correction: str = "holm", alpha: float = 0.05,
                n_resamples: int = 1000, seed: int | None = None) -> Leaderboard:
    """The report's leaderboard of an ``evaluate`` frame (one model and dataset).

    Args:
        frame: rows with ``model``, ``dataset``, ``method`` and the per-sample columns.
        metrics: output keys for the table's columns; default each metric's own score.
        control: the control method of the paired tests (when in the frame).
        correction, alpha: multiple-comparison correction (holm, bh, none) and level.
        n_resamples, seed: the bootstrap; seed None: the frame's (``evaluate``'s) seed.
    Returns:
        a :class:`Leaderboard`.
    """
    from faithbench import metrics as metric_registry
    from faithbench.report.board import make_board
    from faithbench.report.build import Options, section
    from faithbench.report.published import COLUMNS

    need = {"model", "dataset", "method", "id", "index", "status"} - set(frame.columns)
    if need:
        raise ConfigError(f"frame lacks columns {sorted(need)}: pass faithbench.evaluate's frame")
    pairs = frame[["model", "dataset"]].drop_duplicates()
    if len(pairs) != 1:
        raise ConfigError(f"frame holds {len(pairs)} (model, dataset) pairs; select one: "
                          f"{pairs.to_records(index=False).tolist()}")
    names = frame.attrs.get("metrics") or [c for c in frame.columns if c in metric_registry.METRICS]
    seed = int(frame.attrs.get("seed", 0)) if seed is None else seed
    opts = Options(keys=metrics, control=control, correction=correction, alpha=alpha,
                   n_resamples=n_resamples, seed=seed, figures=False)
    opts.check()
    model, dataset = pairs.iloc[0]
    b = make_board(str(model), str(dataset), _groups(frame, list(names), seed), metrics,
                   n_resamples, seed)
    s = section(b, opts, pd.DataFrame(columns=COLUMNS))
    return Leaderboard(_wide(b.cells, b.rows, b.shown), b.cells, s.tests, s)
