"""``faithbench report --metrics-card``: the metric report card (``faithbench.report.card``)
of the selected runs as Markdown, LaTeX and CSV tables and one figure (metrics as rows,
the five criteria as columns, one panel per (model, dataset))."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from faithbench.report.build import Options, collect
from faithbench.report.card import MetricCard, metric_card
from faithbench.report.render import esc, frame_rows, latex_tabular, markdown_table

# The figure's columns: (card column, heading, colour scale low..high; None: log cost)
CRITERIA = [("truth", "truth\nagreement", (-1.0, 1.0)), ("control_win_sample", "beats\ncontrols", (0.0, 1.0)),
            ("alpha", "reliability\n(alpha)", (-1.0, 1.0)), ("min_tau", "protocol\n(min tau)", (-1.0, 1.0)),
            ("seconds_per_sample", "cost\n(ms/sample)", None)]
SHOWN = ["metric", "truth", "oracle_above_other", "oracle_first", "control_win_sample",
         "control_win_mean", "control_effect", "alpha", "consistency", "min_tau", "min_tau_choice",
         "seconds_per_sample", "forwards_per_sample", "fails"]
NOTE = ("truth: mean per-scene Spearman correlation of the metric's method ranking with the "
        "truth ranking (mass on the verified cue minus mass on the other cue) [95% bootstrap CI]; "
        "oracle_above_other / oracle_first: shares of scenes; control_win_*: share of "
        "(control, method) comparisons the method wins, per sample and on the means; "
        "control_effect: Cohen's d; alpha: Krippendorff's alpha (ordinal) of per-sample "
        "rankings; consistency: Spearman with the metric's own variants; min_tau: the "
        "smallest Kendall tau between the method rankings of the metric and of one variant; "
        "cost: per sample; fails: the sanity checks the metric fails on this data.")


def build_card(opts: Options, scratch: Path | None = None) -> tuple[MetricCard, list[str]]:
    """The card of the runs ``opts`` selects (and the problems met reading them)."""
    from faithbench.report.board import make_board
    from faithbench.report.runs import LazyClient
    from faithbench.stores import resolve_uri

    opts.check()
    client = LazyClient(resolve_uri(opts.tracking_uri))
    problems: list[str] = []
    groups, _, _ = collect(client, opts, scratch, problems)
    seed = 0 if opts.seed is None else opts.seed
    boards = []
    for model, dataset in sorted({(g.model, g.dataset) for g in groups}):
        gs = [g for g in groups if (g.model, g.dataset) == (model, dataset)]
        boards.append(make_board(model, dataset, gs, None, opts.n_resamples, seed))
    return metric_card(boards, opts.n_resamples, seed), problems


def display(card: MetricCard, model: str, dataset: str) -> pd.DataFrame:
    """The card rows of one (model, dataset) for the tables: truth with its CI in one
    cell, cost in milliseconds."""
    t = card.table[(card.table["model"] == model) & (card.table["dataset"] == dataset)].copy()
    t["truth"] = [("–" if not math.isfinite(m) else f"{m:.2f} [{lo:.2f}, {hi:.2f}]")
                  for m, lo, hi in zip(t["truth"], t["truth_ci_low"], t["truth_ci_high"])]
    t["seconds_per_sample"] = 1000 * t["seconds_per_sample"]
    t = t[SHOWN].rename(columns={"seconds_per_sample": "ms_per_sample"})
    return t.dropna(axis=1, how="all").reset_index(drop=True)


def figure(card: MetricCard):  # -> matplotlib Figure
    """Metrics as rows, the five criteria as columns, one panel per (model, dataset);
    colour: red = bad, green = good on each criterion's scale (cost: log, cheap green)."""
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(zip(card.table["model"], card.table["dataset"])))
    n_rows = max((int(((card.table["model"] == m) & (card.table["dataset"] == d)).sum())
                  for m, d in pairs), default=1)
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(3.6 * max(1, len(pairs)), 0.6 + 0.22 * n_rows),
                             squeeze=False)
    cmap = plt.get_cmap("RdYlGn")
    for ax, (model, dataset) in zip(axes[0], pairs):
        t = card.table[(card.table["model"] == model) & (card.table["dataset"] == dataset)]
        colour = np.full((len(t), len(CRITERIA), 4), 0.92)
        for j, (col, _, scale) in enumerate(CRITERIA):
            x = t[col].to_numpy(float)
            if scale is None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    lx = np.log10(x)
                lo, hi = np.nanmin(lx) if np.isfinite(lx).any() else 0, np.nanmax(lx) if np.isfinite(lx).any() else 1
                s = 1 - (lx - lo) / (hi - lo if hi > lo else 1)
            else:
                s = (x - scale[0]) / (scale[1] - scale[0])
            for i, (si, xi) in enumerate(zip(s, x)):
                if math.isfinite(si):
                    colour[i, j] = cmap(float(np.clip(si, 0, 1)))
                text = "–" if not math.isfinite(xi) else (f"{1000 * xi:.0f}" if scale is None else f"{xi:.2f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=6)
        ax.imshow(colour, aspect="auto")
        ax.set_yticks(range(len(t)), [m + (" ✗" if f else "") for m, f in zip(t["metric"], t["fails"])],
                      fontsize=6)
        ax.set_xticks(range(len(CRITERIA)), [c[1] for c in CRITERIA], fontsize=6)
        ax.xaxis.tick_top()
        ax.set_title(f"{model} / {dataset}", fontsize=7, pad=18)
    fig.tight_layout()
    return fig


def write_card(card: MetricCard, out: Path, formats: tuple[str, ...], figures: bool = True) -> list[Path]:
    """card.md / card.tex / card.csv (+ card_protocol.csv) and figures/card.{png,pdf}."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    pairs = list(dict.fromkeys(zip(card.table["model"], card.table["dataset"])))
    if "csv" in formats:
        for name, df in (("card.csv", card.table), ("card_protocol.csv", card.protocol)):
            df.to_csv(out / name, index=False)
            paths.append(out / name)
    if "md" in formats:
        lines = ["# Metric report card", "", NOTE, ""]
        for model, dataset in pairs:
            lines += [f"## {model} / {dataset}", "", markdown_table(*frame_rows(display(card, model, dataset), 3, "md")), ""]
        if len(card.protocol):
            lines += ["## Protocol choices (Kendall tau of the method rankings)", "",
                      markdown_table(*frame_rows(card.protocol, 3, "md")), ""]
        (out / "card.md").write_text("\n".join(lines))
        paths.append(out / "card.md")
    if "tex" in formats:
        parts = [f"% {esc(NOTE, 'tex')}"]
        for model, dataset in pairs:
            parts += [f"% {esc(model, 'tex')} / {esc(dataset, 'tex')}",
                      latex_tabular(*frame_rows(display(card, model, dataset), 3, "tex"))]
        (out / "card.tex").write_text("\n".join(parts) + "\n")
        paths.append(out / "card.tex")
    if figures and len(card.table):
        from faithbench.figures import save

        paths += save(figure(card), out / "figures" / "card")
    return paths
