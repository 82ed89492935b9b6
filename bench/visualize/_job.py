"""The ``faithbench visualize`` job: one visualisation of one model, written as PNG files
and logged as one MLflow run (params, scalars, the PNGs as artifacts)."""

from __future__ import annotations

import inspect
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from faithbench import schema
from faithbench.config import DATASET_KEYS, digest, entry_params, flatten, to_dict
from faithbench.errors import ConfigError
from faithbench.jobs import check_pair, pick_device, select_indices, tracked_job
from faithbench.params import check_params as declared_checks

if TYPE_CHECKING:
    from faithbench.registry import Entry
    from faithbench.visualize import VizInfo
    from faithbench.visualize._context import VizContext

log = logging.getLogger("faithbench")


def check_params(fn: Any, params: dict[str, Any], name: str) -> None:
    """Every key of ``params`` must be a parameter of entry ``fn`` (after ``ctx``), and
    every value one that its declaration admits (``faithbench.params``)."""
    own = [n for n in inspect.signature(fn).parameters if n != "ctx"]
    bad = [k for k in params if k not in own]
    if bad:
        raise ConfigError(f"visualisation {name!r} has no parameter {bad[0]!r}. "
                          f"Valid parameters: {', '.join(own)}.")
    declared_checks(fn, params, f"visualisation {name!r}")


def prepare(cfg: DictConfig) -> tuple[Entry[VizInfo], dict[str, Any], VizContext]:
    """Resolve and check the entry, load the model and (if used) the dataset."""
    from faithbench import datasets, models, visualize
    from faithbench.types import BenchDataset
    from faithbench.visualize._context import VizContext

    entry = visualize.get(cfg.viz.name)
    params = entry_params(cfg.viz)
    check_params(entry.fn, params, cfg.viz.name)
    device = pick_device(str(cfg.device))
    spec = models.load(cfg.model.name, **entry_params(cfg.model))
    spec.model.to(device)

    def load() -> tuple[BenchDataset, list[int]]:
        """The dataset and its selection, built when a visualisation first reads it."""
        check_pair(cfg, spec.label_space, datasets.get(cfg.dataset.name).info.label_space)
        node = to_dict(cfg.dataset)
        ds = datasets.build(cfg.dataset.name, spec.preprocess, **entry_params(node, DATASET_KEYS))
        check_pair(cfg, spec.label_space, ds.label_space, spec.class_names, ds.class_names)
        return ds, select_indices(len(ds), node.get("limit"), node.get("subset_seed"),
                                  int(node.get("shard", 0)), int(node.get("num_shards", 1)))

    ctx = VizContext(spec, device, seed=int(cfg.seed), batch_size=int(cfg.batch_size),
                     load=load if entry.info.uses_dataset else None)
    return entry, params, ctx


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one visualisation job (no Hydra needed).

    Returns:
        ``{"figures": [PNG paths], "run_id": MLflow run id, "metrics": {...}}``.
    """
    from faithbench import tracking
    from faithbench.visualize._draw import save_png

    t0 = time.time()
    torch.manual_seed(int(cfg.seed))
    entry, params, ctx = prepare(cfg)
    name = f"{cfg.model.name}/{cfg.viz.name}"
    log.info("%s: %s(%s)", name, cfg.viz.name, ", ".join(f"{k}={v}" for k, v in params.items()))
    tracker = tracking.Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    key = digest([to_dict(cfg.viz), to_dict(cfg.model), to_dict(cfg.dataset), int(cfg.seed),
                  ctx.spec.weights_id])[:16]
    with tracked_job(tracker, key, name, _tags(cfg, ctx)) as run_id:
        tracker.log_params(run_id, flatten({k: v for k, v in to_dict(cfg).items()
                                            if k not in ("hydra",)}))
        result = entry.fn(ctx, **params)
        out = figures_dir(cfg, ctx.dataset is not None)
        paths = [save_png(fig, out / f"{stem}.png", int(cfg.dpi))
                 for stem, fig in result.figures.items()]
        metrics = {**result.metrics, "seconds": time.time() - t0}
        if ctx.dataset is not None:  # known once the visualisation has run
            tracker.set_tags(run_id, {schema.DATASET: cfg.dataset.name})
        tracker.log_metrics(run_id, metrics)
        tracker.log_artifacts(run_id, paths)
    for p in paths:
        log.info("wrote %s", p)
    return {"figures": paths, "run_id": run_id, "metrics": metrics}


def figures_dir(cfg: DictConfig, uses_dataset: bool) -> Path:
    """``cfg.figures_dir``, else out_dir/visualize/<model>[/<dataset>]/<viz>; absolute."""
    if cfg.get("figures_dir"):
        return Path(str(cfg.figures_dir)).expanduser().resolve()
    parts = [cfg.model.name, *([cfg.dataset.name] if uses_dataset else []), cfg.viz.name]
    return Path(str(cfg.out_dir), "visualize", *parts).resolve()


def _tags(cfg: DictConfig, ctx: VizContext) -> dict[str, str]:
    import platform

    from faithbench import __version__
    from faithbench.version import git_revision

    dev = ctx.device
    return {schema.KIND: "visualize", schema.VERSION: __version__,
            schema.GIT: git_revision() or "unknown", "torch": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "seed": str(cfg.seed), schema.MODEL: cfg.model.name, "viz": cfg.viz.name,
            schema.DATASET: "",
            "weights_id": ctx.spec.weights_id}


def task(cfg: DictConfig, failed: list[str]) -> None:
    """Hydra task: a bad config is one clear line and exit status 2 in a single run; in
    a sweep it is appended to ``failed`` (the sweep's own list) and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        run(cfg)
    except ConfigError as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            failed.append(f"{cfg.viz.name}/{cfg.model.name}: {e}")
            log.error("%s failed: %s", cfg.viz.name, e)
            return
        print(f"faithbench: error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> int:
    """``faithbench visualize [overrides]``; 0 on success, 1 if jobs of a sweep failed."""
    import hydra

    failed: list[str] = []  # this call's sweep; Hydra's basic launcher runs jobs in-process

    @hydra.main(version_base="1.3", config_path="pkg://faithbench.conf", config_name="visualize")
    def _main(cfg: DictConfig) -> None:
        task(cfg, failed)

    sys.argv = [f"{Path(sys.argv[0]).name} visualize", *argv]
    _main()
    if failed:
        print(f"{len(failed)} jobs failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
