"""Finding the benchmark runs a report is made of, in an MLflow store.

A benchmark run is a FINISHED run with a ``model`` tag that is neither superseded by a
forced rerun (``faithbench.superseded``) nor a report run (``faithbench.kind=report``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faithbench import schema
from faithbench.errors import ConfigError
from faithbench.stores import connect_readonly, sqlite_file

log = logging.getLogger("faithbench.report")
REPORT_KIND = "report"  # value of the tag ``faithbench.kind`` on report runs


@dataclass
class RunInfo:
    """What the report needs of one MLflow run."""

    run_id: str
    experiment_id: str
    start_time: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_uri: str = ""  # where its artifacts are ("" when not known)

    @classmethod
    def of(cls, run: Any) -> RunInfo:
        """The same of an MLflow ``Run``."""
        i, d = run.info, run.data
        return cls(i.run_id, i.experiment_id, i.start_time or 0, dict(d.tags), dict(d.params),
                   dict(d.metrics), i.artifact_uri or "")

    @property
    def group(self) -> str:
        """The key shared by all shards of one run (its run key when not logged)."""
        return self.tags.get(schema.GROUP_KEY) or self.tags.get(schema.RUN_KEY, self.run_id)

    @property
    def shard(self) -> tuple[int, int]:
        """(shard, num_shards) from the ``shard`` tag ``"i/N"``."""
        return schema.parse_shard(self.tags.get(schema.SHARD, schema.WHOLE))

    @property
    def metric_names(self) -> list[str]:
        """The metrics the run was configured with (its ``metrics`` param)."""
        import ast

        raw = self.params.get("metrics", "[]")
        try:
            names = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            names = [s.strip(" '\"") for s in raw.strip("[]").split(",") if s.strip()]
        return [str(n) for n in names]


def _quote(value: str) -> str:
    """``value`` as a string literal of MLflow's search filter (double quotes around a
    value with a single quote: MLflow reads a backslash before a quote literally, so a
    value with both quotes cannot be written there)."""
    if "'" in value and '"' in value:
        raise ConfigError(f"the tag value {value!r} holds both kinds of quotes, which MLflow's "
                          "search filter cannot express (a SQLite store's runs are read without it)")
    return f'"{value}"' if "'" in value else f"'{value}'"


def filter_string(tags: dict[str, str], sweep: str | None) -> str:
    """MLflow search filter: FINISHED runs with the given tag values, and (with
    ``sweep``) a ``faithbench.sweep`` tag at or under that directory."""
    parts = ["attributes.status = 'FINISHED'"]
    for k, v in tags.items():
        parts.append(f"tags.`{k}` = {_quote(v)}")
    if sweep:
        path = str(Path(sweep).expanduser().resolve())
        parts.append(f"tags.`{schema.SWEEP}` LIKE {_quote(path + '%')}")
    return " and ".join(parts)


def select_runs(client: Any, experiments: list[str], tags: dict[str, str] | None = None,
                sweep: str | None = None) -> list[RunInfo]:
    """Benchmark runs of the named experiments matching ``tags`` and ``sweep``.

    Args:
        client: an ``MlflowClient`` (or a ``LazyClient``).
        experiments: experiment names; an unknown name is an error listing the known ones.
        tags: tag -> exact value (e.g. ``{"model": "shapes_cnn"}``).
        sweep: a Hydra sweep directory (runs whose ``faithbench.sweep`` is under it).
    Returns:
        the runs, oldest first (by start time, then run id).
    """
    db = sqlite_file(client.tracking_uri)
    if db is not None:
        runs = sqlite_runs(db, client.tracking_uri, experiments, tags, sweep)
        if runs is not None:
            return runs
    return mlflow_runs(client, experiments, tags, sweep)


def _benchmark_run(tags: dict[str, str], under: str | None) -> bool:
    """Whether a finished run with these tags is a benchmark run under ``under``."""
    if tags.get(schema.SUPERSEDED) == "true" or tags.get(schema.KIND) == REPORT_KIND:
        return False
    if schema.identity(tags) is None:
        return False
    where = tags.get(schema.SWEEP, "")
    # (MLflow's LIKE treats "_" as a wildcard: the prefix is checked exactly)
    return not under or where == under or where.startswith(under.rstrip("/") + "/")


def mlflow_runs(client: Any, experiments: list[str], tags: dict[str, str] | None = None,
                sweep: str | None = None) -> list[RunInfo]:
    """``select_runs`` through MLflow's client (any store)."""
    ids = []
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = sorted(e.name for e in client.search_experiments())
            raise ConfigError(f"unknown experiment {name!r} in {client.tracking_uri}. "
                              f"Valid choices: {', '.join(known) or '(none)'}.")
        ids.append(exp.experiment_id)
    flt = filter_string(tags or {}, sweep)
    under = str(Path(sweep).expanduser().resolve()) if sweep else None
    runs: list[RunInfo] = []
    token = None
    while True:
        page = client.search_runs(ids, flt, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        for r in page:
            if _benchmark_run(r.data.tags, under):
                runs.append(RunInfo.of(r))
        token = page.token
        if not token:
            break
    return runs


# What ``sqlite_runs`` reads of MLflow's SQL schema (tables and their columns).
_SCHEMA = {"experiments": {"experiment_id", "name", "lifecycle_stage"},
           "runs": {"run_uuid", "experiment_id", "status", "lifecycle_stage", "start_time", "artifact_uri"},
           "tags": {"key", "value", "run_uuid"}, "params": {"key", "value", "run_uuid"},
           "latest_metrics": {"key", "value", "is_nan", "run_uuid"}}


def sqlite_runs(db: Path, uri: str, experiments: list[str], tags: dict[str, str] | None = None,
                sweep: str | None = None, benchmark: bool = True) -> list[RunInfo] | None:
    """``select_runs`` read straight from the SQLite file of an MLflow store, read-only,
    without importing MLflow (about 2 s of a report's start on two CPU cores: MLflow's
    import and its SQL store). The same runs as MLflow's ``search_runs``: active runs
    with status FINISHED, their tags, params and latest metric values (NaN where MLflow
    stored one), oldest first with ties in run id order (tested against MLflow). None
    where this reading does not apply, and MLflow reads the store: no such file, a
    schema without these tables and columns, or workspaces turned on
    (``MLFLOW_ENABLE_WORKSPACES``). With ``benchmark`` False, every finished run (with
    ``tags``), benchmark run or not."""
    import os
    import sqlite3

    if os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true") or not db.is_file():
        return None
    try:
        con = connect_readonly(db)
    except sqlite3.Error:
        return None
    try:
        columns = {t: {c[1] for c in con.execute(f'pragma table_info("{t}")')} for t in _SCHEMA}
        if any(not need <= columns[t] for t, need in _SCHEMA.items()):
            return None
        return _sqlite_runs(con, "workspace" in columns["experiments"], uri, experiments,
                            tags or {}, sweep, benchmark)
    except sqlite3.Error:
        return None
    finally:
        con.close()


def _sqlite_runs(con: Any, workspaces: bool, uri: str, experiments: list[str],
                 tags: dict[str, str], sweep: str | None, benchmark: bool) -> list[RunInfo]:
    here = " and workspace = 'default'" if workspaces else ""
    ids = []
    for name in experiments:
        row = con.execute(f"select experiment_id from experiments where name = ?{here}", (name,)).fetchone()
        if row is None:
            known = sorted(n for (n,) in con.execute(
                f"select name from experiments where lifecycle_stage = 'active'{here}"))
            raise ConfigError(f"unknown experiment {name!r} in {uri}. "
                              f"Valid choices: {', '.join(known) or '(none)'}.")
        ids.append(row[0])
    marks = ",".join("?" * len(ids))
    found = con.execute(
        f"select run_uuid, experiment_id, start_time, artifact_uri from runs where experiment_id in ({marks}) "
        "and status = 'FINISHED' and lifecycle_stage = 'active' "
        "order by start_time is null, start_time, run_uuid",  # no time last, as MLflow orders
        ids).fetchall()
    runs = {r: RunInfo(r, str(e), t or 0, {}, {}, {}, a or "") for r, e, t, a in found}
    con.execute("create temp table wanted (run_uuid text primary key)")
    con.executemany("insert into wanted values (?)", ((r,) for r in runs))
    for table in ("tags", "params"):  # RunInfo's fields of the same names
        for key, value, r in con.execute(
                f'select t."key", t.value, t.run_uuid from {table} t join wanted w using (run_uuid)'):
            getattr(runs[r], table)[key] = value
    for key, value, nan, r in con.execute(
            'select m."key", m.value, m.is_nan, m.run_uuid from latest_metrics m join wanted w using (run_uuid)'):
        runs[r].metrics[key] = float("nan") if nan else float(value)
    under = str(Path(sweep).expanduser().resolve()) if sweep else None
    return [r for r in runs.values()
            if all(r.tags.get(k) == v for k, v in tags.items()) and (not benchmark or _benchmark_run(r.tags, under))]


class LazyClient:
    """An ``MlflowClient`` of ``tracking_uri`` made when first used: a report whose runs
    are read from a SQLite file and whose artifacts are cached never imports MLflow."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_client":
            raise AttributeError(name)
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return getattr(self._client, name)


class ArtifactStore:
    """Run artifacts: read where they are when the run's artifact URI is a folder on
    this machine (a ``file:`` URI or an absolute path, as a local store writes them),
    else downloaded once, into ``root`` (the report's scratch directory), or into
    ``cache`` (kept across reports, one folder per run id) when given. A report reads
    only FINISHED runs, whose artifacts never change, and a run id is never reused, so
    an artifact found in the cache is the artifact of that run; a second report over
    the same runs downloads nothing, and does not list the artifacts of a run again to
    learn that it has none of a name (``.absent-<name>``)."""

    def __init__(self, client: Any, root: Path, cache: Path | None = None) -> None:
        self.client, self.root = client, Path(root)
        self.cache = None if cache is None else Path(cache)

    def get(self, run: RunInfo, name: str) -> Path | None:
        """Local path of artifact ``name`` of ``run``; None when the run has none."""
        where = local_folder(run.artifact_uri)
        if where is not None:  # as MLflow reads it: no file there, no such artifact
            return where / name if (where / name).is_file() else None
        dst = (self.cache or self.root) / run.run_id
        local = dst / name
        if local.exists():
            return local
        absent = dst / f".absent-{name}"  # a finished run's missing artifact stays missing
        if absent.exists():
            return None
        have = {a.path for a in self.client.list_artifacts(run.run_id)}
        if name not in have:
            if self.cache is not None:
                absent.parent.mkdir(parents=True, exist_ok=True)
                absent.touch()
            return None
        if self.cache is None:
            dst.mkdir(parents=True, exist_ok=True)
            return Path(self.client.download_artifacts(run.run_id, name, str(dst)))
        import os
        import tempfile

        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=dst))  # only complete files land
        try:
            os.replace(self.client.download_artifacts(run.run_id, name, str(tmp)), local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return local


def local_folder(artifact_uri: str) -> Path | None:
    """The folder an artifact URI names on this machine, read as MLflow's local artifact
    repository reads it (percent escapes decoded, in a plain path too): ``file:`` URIs
    with no host (or ``localhost``) and paths, when absolute. None for any other store
    (a tracking server's, a cloud bucket's, another host's) and for a relative path
    (relative to where the store was written, not known here)."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    u = urlparse(artifact_uri)
    if u.scheme == "file" and u.netloc in ("", "localhost"):
        path = u.path
    elif not u.scheme or len(u.scheme) == 1:  # a path ("C:\\..." on Windows)
        path = artifact_uri
    else:
        return None
    folder = Path(url2pathname(path))
    return folder if path and folder.is_absolute() else None


def artifact_cache(uri: str) -> Path | None:
    """The folder of cached run artifacts of tracking store ``uri`` (under
    ``faithbench.index.cache_dir()``), None when ``FAITHBENCH_NO_ARTIFACT_CACHE`` is set."""
    import hashlib
    import os

    from faithbench.index import cache_dir

    if os.environ.get("FAITHBENCH_NO_ARTIFACT_CACHE"):
        return None
    return cache_dir() / "artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:16]
