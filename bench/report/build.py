"""``build(options) -> Report``: runs selected, shards merged, one section per
(model, dataset) with its leaderboard, tests, reliability, agreement, published
numbers and figures; ``write`` puts every output format in one folder."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from faithbench.errors import ConfigError
from faithbench.report import analysis, facts, published, ranking
from faithbench.report.board import Board, make_board
from faithbench.report.merge import Group, group_runs, label_groups, load_group, readable
from faithbench.report.ranks import RankTest
from faithbench.report.runs import ArtifactStore, RunInfo, artifact_cache, select_runs
from faithbench.report.stats import CORRECTIONS
from faithbench.report.truth import TruthReport, build_truth, is_truth, truth_columns

log = logging.getLogger("faithbench.report")
FORMATS = ("md", "tex", "csv", "html")


@dataclass
class Options:
    """What to report on and how (the command line's options)."""

    tracking_uri: str | None = None
    experiments: list[str] = field(default_factory=lambda: ["faithbench"])
    tags: dict[str, str] = field(default_factory=dict)
    sweep: str | None = None
    out: Path = Path("faithbench_out/report")
    formats: tuple[str, ...] = FORMATS
    keys: list[str] | None = None  # table columns; default: each metric's own score
    correction: str = "holm"
    alpha: float = 0.05
    control: str | None = "random"
    win: str | None = "average_drop"
    n_resamples: int = 1000
    seed: int | None = None  # bootstrap seed; None: each run's own seed
    digits: int = 3
    figures: bool = True
    gallery: int = 6  # samples in the heatmap gallery
    published: list[Path] = field(default_factory=list)
    log_mlflow: bool = True
    metrics_card: bool = False  # write the metric report card (faithbench.report.card) instead

    def check(self) -> None:
        if self.correction not in CORRECTIONS:
            from faithbench.errors import unknown_choice

            raise unknown_choice("correction", self.correction, CORRECTIONS)
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"unknown format {bad[0]!r}. Valid choices: {', '.join(FORMATS)}.")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha={self.alpha} must be in (0, 1)")
        if self.n_resamples < 1 or self.digits < 0 or self.gallery < 0:
            raise ConfigError("n_resamples must be >= 1, digits and gallery >= 0")


@dataclass
class Section:
    """Everything reported for one (model, dataset)."""

    board: Board
    tests: pd.DataFrame
    win: pd.Series
    reliability: pd.DataFrame
    agreement: tuple[pd.DataFrame, pd.DataFrame]
    published: pd.DataFrame
    figures: dict[str, list[Path]] = field(default_factory=dict)  # caption -> [png, pdf]
    ranks: list[RankTest] = field(default_factory=list)  # per shown output, samples as blocks
    controls: set[str] = field(default_factory=set)  # labels of control methods
    below: dict[str, list[str]] = field(default_factory=dict)  # label -> outputs not beating the controls
    cd_figures: dict[str, list[Path]] = field(default_factory=dict)  # output key -> [png, pdf]
    views: dict[str, list[Path]] = field(default_factory=dict)  # label -> its drill-down images
    drawn: bool = False  # its figures are drawn (``write.draw``)


@dataclass
class Report:
    options: Options
    uri: str
    sections: list[Section]
    runs: pd.DataFrame  # the source runs
    problems: list[str]
    experiment_id: str | None = None
    store: ArtifactStore | None = None  # where run artifacts were downloaded
    truth: TruthReport | None = None  # the known-truth track's section, when it has runs
    across: list[RankTest] = field(default_factory=list)  # (model, dataset) pairs as blocks
    cd_figures: dict[str, list[Path]] = field(default_factory=dict)  # key or "all" -> [png, pdf]
    labels: list[str] = field(default_factory=list)  # every method label (for the colours)


def collect(client: object, opts: Options, scratch: Path | None, problems: list[str]) -> tuple[list[Group], ArtifactStore, list[RunInfo]]:
    """The selected runs as labelled groups with their per-sample frames loaded."""
    groups, store, runs = select(client, opts, scratch, problems)
    for g in groups:
        g.frame = load_group(g, store, problems)
    return [g for g in groups if g.frame is not None], store, runs


def select(client: object, opts: Options, scratch: Path | None, problems: list[str]) -> tuple[list[Group], ArtifactStore, list[RunInfo]]:
    """The selected runs as labelled groups whose ``samples.parquet`` are at hand (read
    only for their sample ids: the frames are loaded one (model, dataset) at a time)."""
    runs = select_runs(client, opts.experiments, opts.tags, opts.sweep)
    if not runs:
        raise ConfigError(f"no finished benchmark runs match experiments={opts.experiments} "
                          f"tags={opts.tags} sweep={opts.sweep!r} in {client.tracking_uri}")  # type: ignore[attr-defined]
    cache = artifact_cache(client.tracking_uri)  # type: ignore[attr-defined]
    if scratch is None:  # a download folder only when artifacts are not cached
        scratch = cache or Path(tempfile.mkdtemp(prefix="faithbench-report-"))
    store = ArtifactStore(client, scratch, cache)
    groups = group_runs(runs, problems)
    groups = label_groups([g for g in groups if readable(g, store, problems)])
    return groups, store, runs


def section(b: Board, opts: Options, pub: pd.DataFrame) -> Section:
    win = pd.Series(dtype=float)
    if opts.win and any(k.key == opts.win for k in b.keys):
        win = analysis.win_rate(b, opts.win)
    rank_m, samp_m = analysis.agreement(b) if len(b.shown) > 1 else (pd.DataFrame(), pd.DataFrame())
    tests = ranking.section_ranks(b, opts.alpha, opts.correction)
    ctrl = ranking.controls(b)
    oracles = ranking.oracles(b)  # marked with the controls, but no bar to beat
    below = {k: v for k, v in ranking.below_controls(b, tests, ctrl - oracles).items() if k not in oracles}
    return Section(b, analysis.paired_tests(b, opts.control, opts.correction, opts.alpha), win,
                   analysis.reliability(b), (rank_m, samp_m),
                   published.compare(pub, b.cells, b.model, b.dataset), ranks=tests,
                   controls=ctrl, below=below)


def build(opts: Options, scratch: Path | None = None,
          each: Callable[[Report, Section], None] | None = None) -> Report:
    """Read the runs and compute every table of the report (figures come in ``write``).

    The leaderboards are built one (model, dataset) at a time, loading only that
    section's per-sample frames. With ``each``, every section is passed to it as soon
    as it is built (``write.draw`` draws its figures) and its frames are dropped after,
    so memory holds one leaderboard's frames at a time; the report keeps the tables
    and, for the known-truth section, the few columns it reads. Without ``each`` every
    frame stays loaded (``Section.board.frame``)."""
    from faithbench.report.runs import LazyClient
    from faithbench.schema import metric_aliases
    from faithbench.stores import resolve_uri

    opts.check()
    uri = resolve_uri(opts.tracking_uri)
    client = LazyClient(uri)
    problems: list[str] = []
    groups, store, runs = select(client, opts, scratch, problems)
    pubs = [published.from_params(r.params) for r in runs]
    pubs += [published.from_file(p) for p in opts.published]
    pub = pd.concat(pubs, ignore_index=True) if pubs else pd.DataFrame(columns=published.COLUMNS)
    rep = Report(opts, uri, [], pd.DataFrame(), problems, runs[0].experiment_id, store,
                 labels=[g.label for g in groups])
    kept: dict[int, Group] = {}  # id(group) -> its copy with the known-truth columns
    sources = []
    for (model, dataset) in sorted({(g.model, g.dataset) for g in groups}):
        gs = []
        for g in groups:
            if (g.model, g.dataset) == (model, dataset):
                g.frame = load_group(g, store, problems)
                if g.frame is not None:
                    gs.append(g)
        if not gs:
            continue
        b = make_board(model, dataset, gs, opts.keys, opts.n_resamples, opts.seed)
        listed = {}
        for g in gs:
            listed.update(metric_aliases(g.first.params, g.metric_names))
        for name in sorted(listed):
            if not facts.registered(listed[name]):
                problems.append(f"metric {name!r} of {model}/{dataset} is not registered in this "
                                "installation: its direction is unknown, its columns are left out")
        _check_logged(b, problems)
        rep.sections.append(section(b, opts, pub))
        sources += _sources(gs)
        kept.update({id(g): replace(g, frame=truth_columns(g.frame)) for g in gs if is_truth(g)})
        if each is not None:
            each(rep, rep.sections[-1])
            b.release()
    if not rep.sections:
        raise ConfigError("no complete run to report on: " + "; ".join(problems))
    rep.truth = build_truth([kept[id(g)] for g in groups if id(g) in kept], problems,
                            opts.n_resamples, 0 if opts.seed is None else opts.seed)
    rep.across = ranking.across_ranks([s.board for s in rep.sections], opts.alpha, opts.correction,
                                      problems)
    rep.runs = pd.DataFrame(sources).sort_values(["model", "dataset", "label"]).reset_index(drop=True)
    return rep


def _check_logged(b: Board, problems: list[str]) -> None:
    """An unsharded run's recomputed mean must equal the mean the runner logged."""
    by_label: dict[str, list[dict]] = {}
    for c in b.cells.to_dict("records"):
        by_label.setdefault(c["label"], []).append(c)
    for g in b.groups:
        if len(g.runs) != 1 or len(g.merged_from) > 1:
            continue
        logged = g.first.metrics
        for c in by_label.get(g.label, []):
            if c["key"] in logged and pd.notna(c["mean"]):
                if abs(logged[c["key"]] - c["mean"]) > 1e-9 * max(1.0, abs(c["mean"])):
                    problems.append(f"{g.label} on {b.model}/{b.dataset}: {c['key']} = {c['mean']!r} "
                                    f"from samples.parquet but {logged[c['key']]!r} logged")


def _sources(groups: list[Group]) -> list[dict[str, object]]:
    """The rows of ``runs.csv`` of loaded groups."""
    return [{"model": g.model, "dataset": g.dataset, "label": g.label, "method": g.method,
             "group_key": g.key, "shards": len(g.runs), "runs": " ".join(r.run_id for r in g.runs),
             "n_samples": len(g.frame) if g.frame is not None else 0} for g in groups]
