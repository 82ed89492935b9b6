"""MLflow logging of ``faithbench.evaluate``: one run per method, made by the runner's
own pieces (``run.Job``, ``run.aggregate``, ``run.tracking_tags``, ``artifacts.write``,
``jobs.tracked_job``), so its tags, params, metrics and artifacts are those of a CLI run
and ``faithbench report`` reads it beside them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from faithbench import schema
from faithbench.config import PROTOCOL_VERSION, digest, flatten, strip_perf
from faithbench.plugins import source_identity
from faithbench.scoring import Scorer
from faithbench.types import BenchDataset, Sample


class Listed(BenchDataset):
    """Samples already made, as a dataset (the gallery reads them by position)."""

    def __init__(self, items: list[Sample | None]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample | None:
        return self.items[index]


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Config-like values only (runner objects such as ``preprocess``, ``explain`` left out)."""
    ok = (type(None), bool, int, float, str, list, tuple)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items() if isinstance(v, ok)}


def images_sha(items: list[Sample | None]) -> str:
    """Hash of the scored images, labels and ids: the data part of the run key."""
    h = hashlib.sha256()
    for s in items:
        if s is not None:
            h.update(s.id.encode())
            h.update(s.image.detach().cpu().contiguous().numpy().tobytes())
            h.update(s.label.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def record(scorer: Scorer, method: Any, dataset: str, seed: int, data: str) -> dict[str, Any]:
    """The run's config as the CLI would log it (flattened) and as its run key hashes it."""
    first = method[0] if isinstance(method, tuple) else method
    name = first if isinstance(first, str) else "callable"
    node: dict[str, Any] = {"name": name, **_plain(scorer.method_params)}
    if name == "callable":
        node["fn"] = source_identity(scorer.method_fn)
    return {"model": {"name": scorer.spec.name}, "method": node,
            "dataset": {"name": dataset, "data": data}, "metrics": [m.name for m in scorer.metrics],
            "metric": {m.name: _plain(m.params) for m in scorer.metrics},
            "target": scorer.target, "seed": seed, "precision": scorer.precision}


def log_method(scorer: Scorer, method: Any, df: pd.DataFrame, items: list[Sample | None],
               dataset: str, seed: int, tracking: str | bool, experiment: str,
               out_dir: Path, figures_grid: int) -> str:
    """Log one method's rows as a finished MLflow run; returns its run id. A finished
    run of the same key is marked superseded (``faithbench report`` reads the new one)."""
    from faithbench import artifacts, tracking as tr
    from faithbench.jobs import JobSettings, tracked_job
    from faithbench.run import Job, aggregate, tracking_tags

    cfg = record(scorer, method, dataset, seed, images_sha(items))
    key = digest(strip_perf({**cfg, "weights_id": scorer.spec.weights_id,
                             "protocol": PROTOCOL_VERSION}))[:16]
    uri = None if tracking is True else str(tracking)
    settings = JobSettings(part_size=max(1, len(items)), batch_size=1, num_workers=0, seed=seed,
                           force=True, out_dir=out_dir, tracking_uri=uri,
                           tracking_experiment=experiment, figures_grid=figures_grid,
                           target=scorer.target, metrics=tuple(cfg["metrics"]),
                           record=flatten(cfg))
    identity = {schema.MODEL: scorer.spec.name, schema.METHOD: scorer.method,
                schema.DATASET: dataset, schema.SHARD: schema.WHOLE, schema.GROUP_KEY: key}
    job = Job(None, settings, scorer, Listed(items), list(range(len(items))), key,  # type: ignore[arg-type]
              f"{scorer.spec.name}/{scorer.method}/{dataset}", identity)
    tracker = tr.Tracker(uri, experiment)
    prev = tracker.find(key)
    if prev is not None and prev.info.status == "FINISHED":
        tracker.set_tags(prev.info.run_id, {schema.SUPERSEDED: "true"})
    with tracked_job(tracker, key, job.name, tracking_tags(job)) as run_id:
        tracker.log_params(run_id, dict(settings.record))
        tracker.log_artifacts(run_id, artifacts.write(job, df, out_dir / "runs" / key / "artifacts"))
        tracker.log_metrics(run_id, aggregate(job, df))
    return run_id
