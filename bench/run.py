"""The run loop: one (model, method, dataset) scored with a list of metrics, in parquet
parts that make it resumable, logged as one MLflow run."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from faithbench import datasets, methods, metrics, models, schema
from faithbench.aggregate import MEAN, class_space
from faithbench.cache import HeatmapCache
from faithbench.config import (DATASET_KEYS, digest, entry_params, flatten, run_key,
                               strip_perf, to_dict)
from faithbench.errors import ConfigError, IncompatibleError, unknown_choice
from faithbench.jobs import (JobSettings, ModelCache, check_count, check_pair, cpu_chunk_cap,
                             hydra_output_dir, pick_device, select_indices, tracked_job)
from faithbench.outside import DOTTED, code_files, identity, select
from faithbench.probe import check_dataset, probe
from faithbench.scoring import (PRECISIONS, MetricJob, Scorer, filled_params, runner_context,
                                score_items)
from faithbench.types import BenchDataset

log = logging.getLogger("faithbench")


@dataclass
class Job:
    """One prepared benchmark job. Nothing reads the raw ``cfg`` after ``prepare``:
    scoring, aggregation and artifacts read the typed ``settings``, the run's tags read
    ``identity`` (model, method, dataset, shard and group key, fixed by ``prepare``)."""

    cfg: DictConfig
    settings: JobSettings
    scorer: Scorer
    dataset: BenchDataset
    indices: list[int]
    key: str
    name: str
    identity: dict[str, str]
    # the samples of the first ``settings.figures_grid`` indices as they were scored, by
    # dataset index: the gallery shows them without reading them again (decoding a photo
    # again took a few milliseconds each)
    scored: dict[int, Any] = field(default_factory=dict)


class _Indexed(Dataset):
    def __init__(self, ds: BenchDataset, indices: list[int]) -> None:
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return self.indices[i], self.ds[self.indices[i]]


# Hydra's basic launcher calls the task once per job in this process and nothing else
# outlives a job, so the process is the scope that a sweep's jobs share: one model held.
MODELS = ModelCache(size=1)


def _selected(cfg: DictConfig) -> tuple[Any, Any, dict[str, Any], Any]:
    """The entries a job names (model, method, metrics, dataset), checked against each
    other as far as that needs no model and no data."""
    model_entry = models.get(cfg.model.name)
    method = select(methods.METHODS, cfg.method)
    chosen = {m: select(metrics.METRICS, _metric_node(cfg, m)) for m in cfg.metrics}
    data = select(datasets.DATASETS, cfg.dataset, DATASET_KEYS)
    if cfg.target not in ("label", "pred"):
        raise unknown_choice("target", cfg.target, ["label", "pred"])
    for key, least in (("batch_size", 1), ("part_size", 1), ("num_workers", 0)):
        check_count(key, cfg.get(key), least)
    if OmegaConf.select(cfg, "figures.grid") is not None:  # images in a run's heatmap grid
        check_count("figures.grid", cfg.figures.grid, 0)
    # a model entry whose label space is a parameter (``callable``) declares it in its node
    check_pair(cfg, cfg.model.get("label_space") or model_entry.info.label_space,
               data.entry.info.label_space)
    return model_entry, method, chosen, data


def _roles(method: Any, data: Any, chosen: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "dataset": data, **{f"metric.{m.name}": m for m in chosen.values()}}


def _loaded(cfg: DictConfig) -> tuple[Any, Any, dict[str, Any]]:
    """The job's model (held by ``MODELS``), its model entry and its other entries by role."""
    model_entry, method, chosen, data = _selected(cfg)
    spec = MODELS.load(cfg.model, pick_device(str(cfg.device)), bool(cfg.get("channels_last", True)))
    return spec, model_entry, _roles(method, data, chosen)


def job_key(cfg: DictConfig) -> str:
    """The run key of ``cfg`` (after ``apply_method_params``) without building its
    dataset or scoring anything: what a rerun needs to skip a finished job. The model is
    loaded for its weights' identity unless the sweep's process holds it already
    (``MODELS``); the key is the one ``prepare`` computes."""
    spec, model_entry, roles = _loaded(cfg)
    code, _ = identity(roles, model_entry, cfg.model)
    return run_key(cfg, spec.weights_id, code=code)


def job_files(cfg: DictConfig) -> list[str] | None:
    """The files that decide the run key of ``cfg`` beyond its config and faithbench's
    own code: the model's weights files and the outside code's source files (None when
    something else decides it: weights built in Python, code with no source file)."""
    spec, model_entry, roles = _loaded(cfg)
    code = code_files(roles, model_entry, cfg.model)
    if spec.weights_files is None or code is None:
        return None
    return [*spec.weights_files, *code]


def sweep_job_tag(job: str, cfg: DictConfig) -> dict[str, str]:
    """The tag that marks a run as finished by sweep job ``job`` (``faithbench.sweep``),
    with the files its key reads, so the next sweep skips that job without composing it
    (none for a model built in Python, whose files are not known)."""
    from faithbench.sweep import TAG, files_tag

    files = job_files(cfg)
    return {} if files is None else {TAG + job: files_tag(files)}


def prepare(cfg: DictConfig) -> Job:
    """Resolve and check everything before any run is opened, so bad input fails early."""
    model_entry, method, chosen, data = _selected(cfg)
    ds_node = to_dict(cfg.dataset)
    device = pick_device(str(cfg.device))
    spec = MODELS.load(cfg.model, device, bool(cfg.get("channels_last", True)))
    precision = str(cfg.get("precision", "fp32"))
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    ds = data.entry.fn(spec.preprocess, **data.params)
    if data.entry.outside:
        check_dataset(ds, f"dataset {data.name!r}")
    check_pair(cfg, spec.label_space, ds.label_space, spec.class_names, ds.class_names)
    indices = select_indices(len(ds), ds_node.get("limit"), ds_node.get("subset_seed"),
                             int(ds_node.get("shard", 0)), int(ds_node.get("num_shards", 1)))
    context = runner_context(spec, int(cfg.seed))
    method_entry = method.entry
    cap = cpu_chunk_cap(cfg.get("cpu_chunk"), device, spec.preprocess.size)
    method_params = filled_params(method_entry.fn, method_entry.info.injected, method.params,
                                  context, cap, f"method {method.name!r}")
    if method_entry.info.check_model is not None:  # e.g. an attention method on a CNN
        try:
            method_entry.info.check_model(spec.model)
        except ConfigError as e:
            raise IncompatibleError(f"method {method.name!r} does not apply to model "
                                    f"{cfg.model.name!r}: {e}") from None
    if method_entry.info.needs_layer and not method_params.get("layer"):
        raise ConfigError(f"method {method.name!r} needs a layer and model "
                          f"{cfg.model.name!r} has no default: set method.layer=<module name>")
    scorer = Scorer(spec, method.name, method_entry.fn, method_params, [], cfg.target, device,
                    precision=precision, wants_truth=method_entry.info.oracle)
    if data.entry.info.interventions:  # known truth: verified before scoring
        from faithbench.truth import verify_job  # refuses a model that fails; logs the rates

        scorer.metrics.append(verify_job(spec, ds, indices, device))
    context["explain"] = scorer.held_explain()
    for listed, m in chosen.items():
        entry = m.entry
        params = filled_params(entry.fn, entry.info.injected, m.params, context, cap,
                               f"metric {m.name!r}")
        missing = entry.info.needs - ds.ground_truth
        if missing:
            log.info("metric %s skipped: dataset %s has no %s", m.name, data.name,
                     " or ".join(sorted(missing)))
            continue
        # listed under another entry's name (a protocol variant): its outputs are renamed
        named = str(_metric_node(cfg, listed)["name"])
        alias = listed if named not in (listed, DOTTED) else None
        scorer.metrics.append(MetricJob(m.name, entry.fn, params, entry.info, alias=alias))
    # outside code: its identity goes into the keys
    code, untried = identity(_roles(method, data, chosen), model_entry, cfg.model)
    if untried and indices:  # plugins and dotted paths: tried on one sample first
        probe(scorer, ds, indices[0], untried)
    key = run_key(cfg, spec.weights_id, code=code)
    if cfg.cache:
        transform = digest([entry_params(ds_node, DATASET_KEYS), repr(spec.preprocess)])
        parts = [spec.weights_id, method.name, strip_perf(method_params), transform,
                 str(device.type), precision]
        ns = digest(parts + [code] if code else parts)[:20]
        scorer.cache = HeatmapCache(Path(cfg.out_dir) / "cache" / _dir_name(method.name), ns)
    name = f"{cfg.model.name}/{method.name}/{data.name}"
    if int(ds_node.get("num_shards", 1)) > 1:
        name += f"[{ds_node['shard']}/{ds_node['num_shards']}]"
    settings = JobSettings.from_config(cfg, flatten(logged_config(cfg)))
    identity_tags = {schema.MODEL: cfg.model.name, schema.METHOD: method.name,
                     schema.DATASET: data.name,
                     schema.SHARD: schema.shard_tag(ds_node.get("shard", 0),
                                                    ds_node.get("num_shards", 1)),
                     schema.GROUP_KEY: run_key(cfg, spec.weights_id, shard=False, code=code)}
    return Job(cfg, settings, scorer, ds, indices, key, name, identity_tags)


def logged_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that a run logs as its params: ``metric`` holds the nodes of
    the selected metrics only (the run key reads no others; logging the ~60 unselected
    nodes' defaults took about half a second per job)."""
    d = to_dict(cfg)
    if isinstance(d.get("metric"), dict):
        d["metric"] = {m: v for m, v in d["metric"].items() if m in set(d.get("metrics") or ())}
    return d


def _metric_node(cfg: DictConfig, key: str) -> dict[str, Any]:
    """The node of metric ``key`` of ``cfg.metrics``: ``metric.<key>``, named ``key``
    unless it names another entry (``name: callable`` for a dotted path)."""
    node = to_dict(cfg.get("metric", {}).get(key) or {})
    return {**node, "name": node.get("name") or key}


def _dir_name(name: str) -> str:
    """A method name as a folder name (a dotted path's ``:`` and ``/`` become ``.``)."""
    return name.replace(":", ".").replace("/", ".")


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_text_atomic(text: str, path: Path) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def score_parts(job: Job, parts: Path) -> pd.DataFrame:
    """Score every part that is not on disk yet, then return all rows in order."""
    meta_path = parts / "parts.json"
    meta = {"part_size": job.settings.part_size, "n": len(job.indices), "outputs": {}}
    if meta_path.exists():  # keep the part boundaries of the first try
        meta = json.loads(meta_path.read_text())
        job.scorer.outputs.update(meta["outputs"])
    parts.mkdir(parents=True, exist_ok=True)
    size = meta["part_size"]
    n_parts = math.ceil(len(job.indices) / size)
    paths = [parts / f"part-{p:05d}.parquet" for p in range(n_parts)]
    done = sum(min(size, len(job.indices) - p * size) for p, path in enumerate(paths) if path.exists())
    bar = tqdm(total=len(job.indices), initial=done, desc=job.name, unit="img", leave=False)
    pin = job.scorer.device.type == "cuda"
    shown = set(job.indices[: job.settings.figures_grid or 0])
    for p, path in enumerate(paths):
        if path.exists():
            continue
        idx = job.indices[p * size : (p + 1) * size]
        loader = DataLoader(_Indexed(job.dataset, idx), batch_size=job.settings.batch_size,
                            num_workers=job.settings.num_workers, collate_fn=list, pin_memory=pin)
        frames = []
        for items in loader:
            job.scored.update((i, x) for i, x in items if i in shown and x is not None)
            frames += score_items(job.scorer, items, job.name)
            bar.update(len(items))
        meta["outputs"] = job.scorer.outputs  # which metric owns each column
        _write_text_atomic(json.dumps(meta), meta_path)
        _write_atomic(pd.concat(frames, ignore_index=True), path)
    bar.close()
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def aggregate(job: Job, df: pd.DataFrame) -> dict[str, float]:
    ok = df[df["status"] == "ok"]
    out: dict[str, float] = {"n_samples": float(len(ok)),
                             "n_unreadable": float((df["status"] != "ok").sum())}
    if len(ok):
        out["model_accuracy"] = float(ok["correct"].mean())
    for m in job.scorer.metrics:
        for key, owner in job.scorer.outputs.items():
            if owner != m.label or ok[key].dtype == object:  # per-sample vectors: not averaged
                continue
            # A metric's aggregation is for its scores; other outputs (the pointing
            # game's point _y/_x) are plain means, never class means over absent classes.
            score = m.direction(key) is not None
            agg = m.info.aggregate if score else MEAN
            out.update(schema.stat_record(key, agg(ok, key, seed=job.settings.seed,
                                                   num_classes=class_space(m.params))))
    return out


def cost_record(job: Job) -> dict[str, float]:
    """Per metric, the seconds and the images forwarded through the model per sample,
    over the samples this process scored (none when every part was done before)."""
    out = {}
    for label, (seconds, images, n) in job.scorer.cost.items():
        if n:
            out[label + schema.COST_SECONDS] = seconds / n
            out[label + schema.COST_FORWARDS] = images / n
    return out


def apply_method_params(cfg: DictConfig) -> DictConfig:
    """Fold ``method_params.<method>`` (per-method overrides for sweeps over methods)
    into ``cfg.method`` when it names the selected method, then drop the table, so a
    run's key and params hold only what applies to its own method."""
    table = to_dict(cfg.get("method_params") or {})
    for name in table:
        if name != DOTTED:  # a typo in the table is an error, not a silent no-op
            methods.get(name)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.method = OmegaConf.merge(cfg.method, table.get(cfg.method.name, {}))
        cfg.pop("method_params", None)
    return cfg


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one job (no Hydra needed): returns the logged aggregates
    (``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``, ``<metric>_n``, ...,
    ``<metric>_seconds_per_sample``, ``<metric>_forwards_per_sample``); for a finished
    job, the same numbers read back from its run."""
    from faithbench import artifacts, tracking
    from faithbench.sweep import this_job

    t0 = time.time()
    cfg = apply_method_params(cfg)
    uri = cfg.tracking.get("uri")
    tracker = tracking.tracker(None if uri is None else str(uri), str(cfg.tracking.experiment))
    key = prev = None
    sweep_job = None if cfg.force else this_job()
    if not cfg.force:  # a finished job is skipped before its dataset is built
        key = job_key(cfg)
        prev = tracker.find(key)
        if prev is not None and prev.info.status == "FINISHED":
            log.info("%s/%s/%s: finished already (run %s, key %s), skipped", cfg.model.name,
                     cfg.method.name, cfg.dataset.name, prev.info.run_id, key)
            if sweep_job is not None:
                tracker.set_tags(prev.info.run_id, sweep_job_tag(sweep_job, cfg))
            return {k: v for k, v in prev.data.metrics.items()}
    torch.manual_seed(int(cfg.seed))
    job = prepare(cfg)
    s = job.settings
    tags = tracking_tags(job)
    if key != job.key:
        prev = tracker.find(job.key)
    parts = s.out_dir / "runs" / job.key
    reopen = None
    if prev is not None and prev.info.status != "FINISHED":
        reopen = prev.info.run_id
        log.info("%s: resuming run %s", job.name, reopen)
    elif prev is not None:  # force: start over, keep the old run but mark it
        tracker.set_tags(prev.info.run_id, {schema.SUPERSEDED: "true"})
        tracker.forget(job.key)
        for p in parts.glob("part-*.parquet"):
            p.unlink()
        (parts / "parts.json").unlink(missing_ok=True)
    with tracked_job(tracker, job.key, job.name, tags, reopen=reopen) as run_id:
        tracker.log_params(run_id, dict(s.record))
        df = score_parts(job, parts)
        results = aggregate(job, df)
        results["seconds"] = time.time() - t0
        art = artifacts.write(job, df, parts / "artifacts")
        tracker.log_artifacts(run_id, art)
        results.update(cost_record(job))
        done = {} if sweep_job is None else sweep_job_tag(sweep_job, cfg)
        if job.scorer.cache is not None:
            size = job.scorer.cache.size_bytes()
            done.update({schema.CACHE_CORRUPT: job.scorer.cache.corrupt, schema.CACHE_BYTES: size})
            log.info("%s: heatmap cache %s holds %.1f MiB", job.name, job.scorer.cache.dir,
                     size / 2**20)
        tracker.log_metrics(run_id, results, tags=done)  # one write for the numbers and tags
    return results


def tracking_tags(job: Job) -> dict[str, str]:
    import platform

    from faithbench import __version__
    from faithbench.version import git_revision

    dev = job.scorer.device
    return {
        schema.VERSION: __version__, schema.GIT: git_revision() or "unknown",
        "torch": torch.__version__, "torchvision": package_version("torchvision"),
        "timm": package_version("timm"), "mlflow": package_version("mlflow"),
        "python": platform.python_version(), "cuda": str(torch.version.cuda),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "seed": str(job.settings.seed), "target": job.settings.target,
        "weights_id": job.scorer.spec.weights_id, **job.identity,
        schema.SWEEP: hydra_output_dir() or "",
    }


def package_version(name: str) -> str:
    """``name.__version__`` without importing the package (timm and torchvision take
    seconds to import): its ``version.py`` where it has one (torchvision's holds the local
    build suffix, ``+cu130``, that its metadata lacks), else the installed metadata."""
    import importlib.metadata
    import importlib.util
    import re

    spec = importlib.util.find_spec(name)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        file = Path(folder) / "version.py"
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", file.read_text(), re.M) \
            if file.is_file() else None
        if found:
            return found.group(1)
    return importlib.metadata.version(name)
