"""The report logged to MLflow as a report run of the benchmark's experiment, tagged
``faithbench.kind=report`` so that it is never taken for a benchmark run (it has no
run key, model, method or dataset tag, and reports skip it)."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from faithbench import schema
from faithbench.report.build import Report
from faithbench.report.runs import REPORT_KIND


EMBEDDED = Path("figures", "methods")  # each method's view: inside report.html, read by nothing else


def log_report(rep: Report, out: Path) -> str:
    """Log the files under ``out`` as artifacts of a new finished report run, but for
    the methods' views (``EMBEDDED``): ``report.html`` holds them already, and logging
    them again made the run ~12 MB larger on the quick preset's report.

    Returns:
        the report run's id.
    """
    from faithbench import __version__

    client = MlflowClient(tracking_uri=rep.uri)
    o = rep.options
    tags = {schema.KIND: REPORT_KIND, schema.VERSION: __version__,
            "mlflow.runName": "report", "faithbench.report.n_runs": str(len(rep.runs))}
    run = client.create_run(rep.experiment_id, run_name="report", tags=tags)  # type: ignore[arg-type]
    params = {"experiments": ",".join(o.experiments), "sweep": o.sweep or "",
              "tags": ",".join(f"{k}={v}" for k, v in o.tags.items()), "correction": o.correction,
              "alpha": o.alpha, "control": o.control or "", "win": o.win or "",
              "n_resamples": o.n_resamples, "seed": "per run" if o.seed is None else o.seed}
    client.log_batch(run.info.run_id, params=[Param(f"report.{k}", str(v)[:6000]) for k, v in params.items()],
                     tags=[RunTag("faithbench.report.out", str(Path(out).resolve()))])
    for path in sorted(Path(out).rglob("*")):
        rel = path.relative_to(out)
        if path.is_file() and EMBEDDED not in rel.parents:
            client.log_artifact(run.info.run_id, str(path), artifact_path=Path("report", rel.parent).as_posix())
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
