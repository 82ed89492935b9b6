"""Shards of one run merged into one per-sample table, and one row label per run.

All shards of a run share the tag ``faithbench.group_key``. A group is used only when
its shards are complete (``0..N-1`` of one ``N``) and disjoint (no sample id in two
shards). Rows are put in a canonical order (dataset index, then id) so a merged table
equals the table of the same run made unsharded, bit for bit, and so does every
statistic computed from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from faithbench import schema
from faithbench.config import NOT_IN_KEY
from faithbench.report.runs import ArtifactStore, RunInfo

log = logging.getLogger("faithbench.report")
CORE = ("id", "image_id", "index", "target", "pred", "correct", "status")


@dataclass
class Group:
    """One logical run: its shards, and (once loaded) its per-sample rows."""

    key: str
    runs: list[RunInfo]  # one per shard, in shard order
    label: str = ""
    frame: pd.DataFrame | None = None
    merged_from: list[str] = field(default_factory=list)  # group keys combined into this
    parts: list[Group] = field(default_factory=list)  # the older groups combined into this

    @property
    def first(self) -> RunInfo:
        return self.runs[0]

    @property
    def model(self) -> str:
        return self.first.tags[schema.MODEL]

    @property
    def method(self) -> str:
        return self.first.tags[schema.METHOD]

    @property
    def dataset(self) -> str:
        return self.first.tags[schema.DATASET]

    @property
    def metric_names(self) -> list[str]:
        return self.first.metric_names


def group_runs(runs: list[RunInfo], problems: list[str]) -> list[Group]:
    """Runs grouped by group key; incomplete groups are left out and listed in
    ``problems``. Two finished runs of one shard (two stores' copies) keep the newest."""
    by_key: dict[str, dict[int, RunInfo]] = {}
    sizes: dict[str, set[int]] = {}
    for r in sorted(runs, key=lambda r: r.start_time):
        i, n = r.shard
        shards = by_key.setdefault(r.group, {})
        if i in shards:
            log.warning("run %s and %s are both shard %d/%d of %s: the newer is used",
                        shards[i].run_id, r.run_id, i, n, r.group)
        shards[i] = r
        sizes.setdefault(r.group, set()).add(n)
    groups = []
    for key, shards in by_key.items():
        name = "/".join(shards[min(shards)].tags[t] for t in schema.IDENTITY)
        if len(sizes[key]) > 1:
            problems.append(f"{name} (group {key}): shards of different counts "
                            f"{sorted(sizes[key])}; left out")
            continue
        n = sizes[key].pop()
        missing = sorted(set(range(n)) - set(shards))
        if missing or set(shards) - set(range(n)):
            problems.append(f"{name} (group {key}): shards {missing} of {n} are not finished; "
                            "left out until they are")
            continue
        groups.append(Group(key, [shards[i] for i in range(n)]))
    return groups


def load_frame(group: Group, store: ArtifactStore, problems: list[str]) -> pd.DataFrame | None:
    """The group's readable (``status == "ok"``) per-sample rows in canonical order;
    None (and a problem) when an artifact is missing or shards overlap."""
    paths = _sample_files(group, store, problems)
    if paths is None:
        return None
    frames = [pd.read_parquet(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if _overlap(df["id"], group, problems):
        return None
    if not (np.diff(df["index"].to_numpy()) > 0).all():  # a run's rows are usually in order already
        df = df.sort_values(["index", "id"], kind="stable").reset_index(drop=True)
    ok = (df["status"] == "ok").to_numpy()
    return df if ok.all() else df[ok].reset_index(drop=True)


def readable(group: Group, store: ArtifactStore, problems: list[str]) -> bool:
    """Whether ``load_frame`` will load the group (every shard has a
    ``samples.parquet``, no sample id twice), reading only the ``id`` columns; the
    same problems as ``load_frame`` otherwise."""
    import pyarrow.parquet as pq

    paths = _sample_files(group, store, problems)
    if paths is None:
        return False
    ids = [pq.read_table(p, columns=["id"]).column("id").to_pandas() for p in paths]
    return not _overlap(pd.concat(ids, ignore_index=True) if len(ids) > 1 else ids[0], group,
                        problems)


def _sample_files(group: Group, store: ArtifactStore, problems: list[str]) -> list[Path] | None:
    """Each shard's ``samples.parquet``; None (and a problem) when one has none."""
    paths = []
    for r in group.runs:
        path = store.get(r, "samples.parquet")
        if path is None:
            problems.append(f"run {r.run_id} ({group.model}/{group.method}/{group.dataset}) "
                            "has no samples.parquet; left out")
            return None
        paths.append(path)
    return paths


def _overlap(ids: pd.Series, group: Group, problems: list[str]) -> bool:
    """Whether a sample id occurs twice across the group's shards (and a problem if so)."""
    dup = ids[ids.duplicated()]
    if len(dup):
        problems.append(f"{group.model}/{group.method}/{group.dataset} (group {group.key}): "
                        f"shards overlap on {len(dup)} samples (e.g. {dup.iloc[0]!r}); left out")
    return bool(len(dup))


def load_group(group: Group, store: ArtifactStore, problems: list[str]) -> pd.DataFrame | None:
    """``load_frame`` of a labelled group, with the columns only the older groups
    combined into it (``parts``) have joined on sample id."""
    frame = load_frame(group, store, problems)
    for g in group.parts:
        if frame is None:
            break
        frame = _join(frame, load_frame(g, store, problems))
    return frame


def _differing(groups: list[Group]) -> list[str]:
    """Params that tell these groups apart, bookkeeping (run-key-free) params left out."""
    common = set.intersection(*(set(g.metric_names) for g in groups))
    keys = set().union(*(g.first.params for g in groups))
    out = []
    for k in sorted(keys):
        top = k.split(".")[0]
        if top in NOT_IN_KEY or top in ("metrics", "published") or k in ("dataset.shard", "dataset.num_shards"):
            continue
        if top == "metric" and k.split(".")[1] not in common:
            continue
        if len({g.first.params.get(k) for g in groups}) > 1:
            out.append(k)
    return out


def label_groups(groups: list[Group]) -> list[Group]:
    """One row per method and (model, dataset). Runs of one method that differ only in
    their metric lists are combined column-wise (joined on sample id); runs whose
    configs differ are labelled by the differing params, ``grad_cam (layer=features.3)``."""
    cells: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        cells.setdefault((g.model, g.dataset, g.method), []).append(g)
    out = []
    for (_, _, method), gs in cells.items():
        diff = _differing(gs) if len(gs) > 1 else []
        if not diff:
            out.append(_combine(gs))
            out[-1].label = method
            continue
        for g in gs:
            parts = [f"{k.removeprefix('method.')}={g.first.params.get(k)}" for k in diff]
            g.label = f"{method} ({', '.join(parts)})"
            out.append(g)
    return out


def _combine(gs: list[Group]) -> Group:
    """The newest group, with the columns only older groups have joined on sample id."""
    gs = sorted(gs, key=lambda g: g.first.start_time, reverse=True)
    base = gs[0]
    base.merged_from = [g.key for g in gs]
    base.parts = gs[1:]
    if base.frame is None:  # frames not loaded yet: ``load_group`` joins them
        return base
    for g in gs[1:]:
        base.frame = _join(base.frame, g.frame)
    return base


def _join(frame: pd.DataFrame, other: pd.DataFrame | None) -> pd.DataFrame:
    """``frame`` with the columns only ``other`` has, joined on sample id."""
    if other is None:
        return frame
    new = [c for c in other.columns if c not in frame.columns]
    return frame.merge(other[["id", *new]], on="id", how="left") if new else frame
