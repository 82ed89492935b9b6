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
    return "'" + value.replace("'", "\\'") + "'"


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
        client: an ``MlflowClient``.
        experiments: experiment names; an unknown name is an error listing the known ones.
        tags: tag -> exact value (e.g. ``{"model": "shapes_cnn"}``).
        sweep: a Hydra sweep directory (runs whose ``faithbench.sweep`` is under it).
    Returns:
        the runs, oldest first.
    """
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
            t = r.data.tags
            if t.get(schema.SUPERSEDED) == "true" or t.get(schema.KIND) == REPORT_KIND:
                continue
            if schema.identity(t) is None:
                continue
            where = t.get(schema.SWEEP, "")
            if under and not (where == under or where.startswith(under.rstrip("/") + "/")):
                continue  # LIKE treats "_" as a wildcard: check the prefix exactly
            runs.append(RunInfo(r.info.run_id, r.info.experiment_id, r.info.start_time or 0,
                                dict(t), dict(r.data.params), dict(r.data.metrics)))
        token = page.token
        if not token:
            break
    return runs


class ArtifactStore:
    """Run artifacts read once: downloaded into ``root`` (the report's scratch
    directory), or into ``cache`` (kept across reports, one folder per run id) when
    given. A report reads only FINISHED runs, whose artifacts never change, and a run
    id is never reused, so an artifact found in the cache is the artifact of that run;
    a second report over the same runs downloads nothing, and does not list the
    artifacts of a run again to learn that it has none of a name (``.absent-<name>``)."""

    def __init__(self, client: Any, root: Path, cache: Path | None = None) -> None:
        self.client, self.root = client, Path(root)
        self.cache = None if cache is None else Path(cache)

    def get(self, run: RunInfo, name: str) -> Path | None:
        """Local path of artifact ``name`` of ``run``; None when the run has none."""
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


def artifact_cache(uri: str) -> Path | None:
    """The folder of cached run artifacts of tracking store ``uri`` (under
    ``faithbench.index.cache_dir()``), None when ``FAITHBENCH_NO_ARTIFACT_CACHE`` is set."""
    import hashlib
    import os

    from faithbench.index import cache_dir

    if os.environ.get("FAITHBENCH_NO_ARTIFACT_CACHE"):
        return None
    return cache_dir() / "artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:16]
