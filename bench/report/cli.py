"""``faithbench report [options]``: leaderboards, statistics and figures from logged runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from faithbench import schema
from faithbench.errors import ConfigError
from faithbench.report.build import FORMATS, Options
from faithbench.report.stats import CORRECTIONS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faithbench report",
        description="Leaderboards (Markdown, LaTeX, CSV, HTML), paired tests, metric "
                    "reliability and figures from the runs logged to MLflow. Reads only what "
                    "runs logged; never recomputes a heatmap.")
    a = p.add_argument
    a("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    a("--experiment", action="append", dest="experiments", metavar="NAME",
      help="experiment to read (repeatable; default: faithbench)")
    a("--sweep", metavar="DIR", help="only runs of this Hydra sweep directory (or under it)")
    a("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag value (repeatable)")
    for t in schema.IDENTITY:
        a(f"--{t}", help=f"shorthand for --tag {t}=VALUE")
    a("--out", type=Path, default=Path("faithbench_out/report"), help="output folder (default: %(default)s)")
    a("--formats", default=",".join(FORMATS), help="comma-separated subset of %(default)s")
    a("--keys", help="comma-separated output keys for the table columns (default: each metric's score)")
    a("--correction", choices=CORRECTIONS, default="holm",
      help="multiple-comparison correction of the paired tests (default: %(default)s)")
    a("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    a("--control", default="random", help="control method tested against (default: %(default)s; '' for none)")
    a("--win", default="average_drop", help="output for Win %% (default: %(default)s; '' for none)")
    a("--n-resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    a("--seed", type=int, help="bootstrap seed (default: each run's own seed, as the runner)")
    a("--digits", type=int, default=3, help="decimals in the tables (default: %(default)s)")
    a("--gallery", type=int, default=6, help="samples in the heatmap gallery (default: %(default)s)")
    a("--no-figures", action="store_true", help="tables only")
    a("--published", action="append", default=[], type=Path, metavar="YAML",
      help="file with a 'published:' block of published numbers (repeatable)")
    a("--no-mlflow", action="store_true", help="do not log the report as an MLflow report run")
    a("--metrics-card", action="store_true",
      help="write the metric report card instead (card.md/.tex/.csv, figures/card.png): each "
           "metric scored on truth agreement, control separation, reliability, protocol "
           "sensitivity and cost (docs/metrics.md)")
    return p


def options(argv: list[str]) -> Options:
    ns = parser().parse_args(argv)
    tags = {}
    for t in ns.tag:
        k, sep, v = t.partition("=")
        if not sep or not k:
            raise ConfigError(f"--tag {t!r} must be KEY=VALUE")
        tags[k] = v
    for t in schema.IDENTITY:
        if getattr(ns, t):
            tags[t] = getattr(ns, t)
    return Options(
        tracking_uri=ns.tracking_uri, experiments=ns.experiments or ["faithbench"], tags=tags,
        sweep=ns.sweep, out=ns.out, formats=tuple(f.strip() for f in ns.formats.split(",") if f.strip()),
        keys=[k.strip() for k in ns.keys.split(",")] if ns.keys else None,
        correction=ns.correction, alpha=ns.alpha, control=ns.control or None, win=ns.win or None,
        n_resamples=ns.n_resamples, seed=ns.seed, digits=ns.digits, figures=not ns.no_figures,
        gallery=ns.gallery, published=ns.published, log_mlflow=not ns.no_mlflow,
        metrics_card=ns.metrics_card)


def main(argv: list[str]) -> int:
    """Build and write the report; 0 on success, 2 on bad input (message on stderr)."""
    from faithbench.figures import background
    from faithbench.report.build import build
    from faithbench.report.write import draw, write

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        opts = options(argv)
        if opts.metrics_card:
            return card_main(opts)
        with background(None if opts.figures else 1):  # figures drawn by workers while this goes on
            rep = build(opts, each=draw)  # figures drawn section by section, frames dropped
            paths = write(rep)
    except ConfigError as e:
        print(f"faithbench: error: {e}", file=sys.stderr)
        return 2
    for p in rep.problems:
        print(f"faithbench report: warning: {p}", file=sys.stderr)
    n = len(rep.sections)
    print(f"faithbench report: {n} leaderboard{'s' * (n != 1)} from {len(rep.runs)} runs, "
          f"{len(paths)} files in {opts.out}")
    for name in ("report.html", "report.md", "leaderboard.tex", "leaderboard.csv"):
        if (opts.out / name).exists():
            print(f"  {opts.out / name}")
    return 0


def card_main(opts: Options) -> int:
    """``--metrics-card``: build and write the card (errors are the caller's)."""
    from faithbench.report.card_write import build_card, write_card

    card, problems = build_card(opts)
    paths = write_card(card, opts.out, opts.formats, opts.figures)
    for p in problems:
        print(f"faithbench report: warning: {p}", file=sys.stderr)
    failing = card.table[card.table["fails"] != ""]
    print(f"faithbench report: metric card of {card.table['metric'].nunique()} metrics on "
          f"{len(card.table.groupby(['model', 'dataset']))} (model, dataset) pairs, "
          f"{len(paths)} files in {opts.out}")
    for _, r in failing.iterrows():
        print(f"  {r['model']}/{r['dataset']}: {r['metric']} fails {r['fails']}")
    return 0
