"""MLflow bookkeeping: one run per run key, found again to skip or resume it."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing phones home
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from faithbench.schema import RUN_KEY  # noqa: E402

log = logging.getLogger(__name__)
KEY_TAG = RUN_KEY  # kept: the name other modules import


def resolve_uri(uri: str | None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else a SQLite file in the cwd."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


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
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock  # a dependency of torch

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock")


class Tracker:
    """A thin layer over MlflowClient for the runner's life cycle."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri = resolve_uri(uri)
        with store_lock(self.uri):  # the first call creates the store's schema
            self.client = _Retrying(MlflowClient(tracking_uri=self.uri))
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                try:
                    self.experiment_id = self.client.create_experiment(experiment)
                except mlflow.exceptions.MlflowException:  # created concurrently (a server)
                    self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
            else:
                self.experiment_id = exp.experiment_id

    def find(self, key: str) -> mlflow.entities.Run | None:
        """The finished run with this key if any, else the latest unfinished one."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{KEY_TAG}` = '{key}'",
                                       order_by=["attributes.start_time DESC"])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        return (finished or runs or [None])[0]

    def start(self, key: str, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={KEY_TAG: key, **tags})
        return run.info.run_id

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, tags)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        have = self.client.get_run(run_id).data.params
        items = [Param(k[:250], str(v)[:6000]) for k, v in params.items() if k[:250] not in have]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        for p in paths:
            self.client.log_artifact(run_id, str(p))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))
