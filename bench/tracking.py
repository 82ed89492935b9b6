"""MLflow bookkeeping: one run per run key, found again to skip or resume it."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing phones home
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from faithbench.schema import RUN_KEY  # noqa: E402
from faithbench.stores import connect_readonly, resolve_uri, sqlite_file  # noqa: E402  (resolve_uri: imported from here too)

log = logging.getLogger(__name__)
KEY_TAG = RUN_KEY  # kept: the name other modules import


class _Retrying:
    """Forwards to MlflowClient, retrying calls that hit a locked SQLite store (several
    jobs of a local sweep share one file; SQLite lets one writer in at a time)."""

    def __init__(self, client: MlflowClient, tries: int = 8) -> None:
        self._client, self._tries = client, tries

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._client, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            for i in range(self._tries):
                try:
                    return fn(*args, **kwargs)
                except Exception as e:  # MlflowException wrapping sqlite3.OperationalError
                    if "locked" not in str(e) or i == self._tries - 1:
                        raise
                    log.info("tracking store is busy (%s); retrying", name)
                    time.sleep(0.2 * 2**i + random.random() * 0.2)
            raise AssertionError("unreachable")

        return call


def store_lock(uri: str) -> contextlib.AbstractContextManager[Any]:
    """An inter-process lock around creating a SQLite store: MLflow builds a new file's
    schema with alembic migrations that are not safe to run concurrently (parallel jobs
    of a sweep into a fresh ``mlflow.db`` failed with "table ... already exists").
    Other stores (servers, file stores) need no lock."""
    db = sqlite_file(uri)
    if db is None:
        return contextlib.nullcontext()
    from filelock import FileLock  # a dependency of torch

    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock")


def seed_sqlite(db: Path) -> None:
    """Start the new SQLite store ``db`` as a copy of a blank one: MLflow's schema, built
    by MLflow's own migrations once per MLflow schema revision and kept in the cache
    directory (``faithbench.index.cache_dir``), with no experiment in it. MLflow adds its
    default experiment when it opens the copy, as it does for a new file, so the store is
    the one MLflow would have made (tested). Migrating a new file takes 0.8-1.5 s on two
    CPU cores, copying the blank store a few milliseconds. The copy never replaces a
    file that appeared meanwhile, gets the permissions SQLite gives a new file, and is
    checked to hold the blank store's schema revision; any trouble (an unwritable cache,
    a damaged blank store, an MLflow without these internals) leaves the new file to
    MLflow."""
    import tempfile

    tmp = None
    try:
        blank, revision = blank_sqlite()
        db.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
        os.close(fd)
        shutil.copyfile(blank, tmp)
        os.chmod(tmp, 0o644 & ~_umask())
        if _revision(Path(tmp)) != revision:
            Path(blank).unlink(missing_ok=True)  # damaged: built again next time
            return
        os.link(tmp, db)  # fails if db exists now
    except Exception as e:  # noqa: BLE001  (MLflow migrates the file itself)
        log.debug("no blank SQLite store copied (%s): MLflow builds the schema", e)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def blank_sqlite() -> tuple[Path, str]:
    """The cached blank SQLite store of the installed MLflow (built when missing) and its
    schema revision."""
    import tempfile

    import sqlalchemy
    from mlflow.store.db import utils

    from faithbench.index import cache_dir

    revision = str(utils._get_latest_schema_revision())
    path = cache_dir() / f"mlflow-blank-{revision}.db"
    if path.is_file():
        return path, revision
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            utils._initialize_tables(engine)
        finally:
            engine.dispose()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path, revision


def _revision(db: Path) -> str | None:
    """The alembic schema revision a SQLite store records (None if it cannot be read)."""
    import sqlite3

    try:
        con = connect_readonly(db)
        try:
            row = con.execute("select version_num from alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def tracker(uri: str | None, experiment: str) -> Tracker:
    """The process's Tracker of (``uri``, ``experiment``): the jobs of a sweep share one
    client and its store connection instead of opening them again per job."""
    key = (resolve_uri(uri), experiment)
    if key not in _TRACKERS:
        _TRACKERS[key] = Tracker(uri, experiment)
    return _TRACKERS[key]


_TRACKERS: dict[tuple[str, str], Tracker] = {}


class Tracker:
    """A thin layer over MlflowClient for the runner's life cycle."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri, self.experiment = resolve_uri(uri), experiment
        with store_lock(self.uri):  # the first call creates the store's schema
            db = sqlite_file(self.uri)
            if db is not None and not db.exists():
                seed_sqlite(db)
            self.client = _Retrying(MlflowClient(tracking_uri=self.uri))
            exp = self.client.get_experiment_by_name(experiment)
        self._experiment_id = None if exp is None else exp.experiment_id
        self._finds, self._finished = 0, None  # see find
        self._started: dict[str, str] = {}  # run id -> artifact URI, for runs started here
        self._no_params: set[str] = set()  # runs started here that have no params yet

    @property
    def experiment_id(self) -> str:
        """The experiment's id; the experiment is created when a run first needs it, so
        looking runs up never creates it."""
        if self._experiment_id is None:
            with store_lock(self.uri):
                exp = self.client.get_experiment_by_name(self.experiment)
                if exp is not None:
                    self._experiment_id = exp.experiment_id
                    return self._experiment_id
                try:
                    self._experiment_id = self.client.create_experiment(self.experiment)
                except mlflow.exceptions.MlflowException:  # created concurrently (a server)
                    self._experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
        return self._experiment_id

    def exists(self) -> bool:
        """Whether the experiment exists (looked up until it does)."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = None if exp is None else exp.experiment_id
        return self._experiment_id is not None

    def find(self, key: str) -> mlflow.entities.Run | None:
        """The finished run with this key if any, else the latest unfinished one.

        The second call of a process reads every finished run's key in one query (a
        sweep's jobs run one after another in one process); a key found there is a
        finished run, any other key is looked up on its own, so runs finished since by
        another process are found too."""
        if not self.exists():
            return None
        self._finds += 1
        if self._finished is None and self._finds > 1:
            self._finished = self.finished_runs()
        if self._finished is not None and key in self._finished:
            return self._finished[key]
        runs = self.client.search_runs([self.experiment_id], f"tags.`{KEY_TAG}` = '{key}'",
                                       order_by=["attributes.start_time DESC"])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        return (finished or runs or [None])[0]

    def finished_runs(self) -> dict[str, mlflow.entities.Run]:
        """The latest finished run of each run key in the experiment (one paged query)."""
        out: dict[str, mlflow.entities.Run] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], "attributes.status = 'FINISHED'",
                                           max_results=10_000, page_token=token,
                                           order_by=["attributes.start_time DESC"])
            for r in page:
                key = r.data.tags.get(KEY_TAG)
                if key is not None and key not in out:
                    out[key] = r
            token = page.token
            if not token:
                return out

    def forget(self, key: str) -> None:
        """Drop ``key`` from the finished runs read in bulk (its run is superseded)."""
        if self._finished is not None:
            self._finished.pop(key, None)

    def start(self, key: str, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={KEY_TAG: key, **tags})
        self._started[run.info.run_id] = run.info.artifact_uri
        self._no_params.add(run.info.run_id)
        return run.info.run_id

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, tags)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if tags:  # no write for nothing
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log the params the run does not have yet (a run started here has none)."""
        have = {} if run_id in self._no_params else self.client.get_run(run_id).data.params
        self._no_params.discard(run_id)
        items = [Param(k[:250], str(v)[:6000]) for k, v in params.items() if k[:250] not in have]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0,
                    tags: dict[str, Any] | None = None) -> None:
        """Log ``metrics`` (and ``tags``, in the same first write)."""
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        rest = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(items), 1), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500], tags=rest)
            rest = []

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        """Copy ``paths`` into the run's artifacts. For a run started here whose artifacts
        are local files, through MLflow's repository for the artifact URI that creating
        the run returned (MLflow's client reads the run again first: 5 ms a run)."""
        uri = self._started.get(run_id)
        if uri is not None and urllib.parse.urlparse(uri).scheme in ("", "file"):
            repo = get_artifact_repository(uri)
            for p in map(Path, paths):
                if p.is_dir():  # as MLflow's client logs a folder: under its name
                    repo.log_artifacts(str(p), p.name)
                else:
                    repo.log_artifact(str(p))
            return
        for p in paths:
            self.client.log_artifact(run_id, str(p))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self._started.pop(run_id, None)
        self._no_params.discard(run_id)
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))
