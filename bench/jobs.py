"""What every tracked job shares, the benchmark run (``faithbench.run``) and the
visualisation job (``faithbench.visualize._job``) alike: its typed settings, its MLflow
lifecycle, the device it runs on, the (model, dataset) pair check, the dataset positions
it reads, and the models kept loaded across the jobs of a sweep."""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faithbench.errors import ConfigError, IncompatibleError
from faithbench.labels import class_order_problem

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from faithbench.tracking import Tracker
    from faithbench.types import ModelSpec


@dataclass(frozen=True)
class JobSettings:
    """What a benchmark job reads after ``prepare``, checked and typed once, so that
    scoring, aggregation, artifacts and tracking never go back to the raw config."""

    part_size: int
    batch_size: int
    num_workers: int
    seed: int
    force: bool
    out_dir: Path
    tracking_uri: str | None
    tracking_experiment: str
    figures_grid: int | None  # None where the config has no figures node (prepare-only uses)
    target: str
    metrics: tuple[str, ...]
    record: Mapping[str, Any]  # the flattened config, logged as the run's params

    @classmethod
    def from_config(cls, cfg: DictConfig, record: Mapping[str, Any]) -> JobSettings:
        """Read from a config whose counts and choices ``prepare`` has checked."""
        from omegaconf import OmegaConf

        uri, grid = cfg.tracking.get("uri"), OmegaConf.select(cfg, "figures.grid")
        return cls(part_size=int(cfg.part_size), batch_size=int(cfg.batch_size),
                   num_workers=int(cfg.num_workers), seed=int(cfg.seed), force=bool(cfg.force),
                   out_dir=Path(str(cfg.out_dir)), tracking_uri=None if uri is None else str(uri),
                   tracking_experiment=str(cfg.tracking.experiment),
                   figures_grid=None if grid is None else int(grid), target=str(cfg.target),
                   metrics=tuple(str(m) for m in cfg.metrics), record=dict(record))


@contextmanager
def tracked_job(tracker: Tracker, key: str, name: str, tags: dict[str, str],
                reopen: str | None = None) -> Iterator[str]:
    """Start the MLflow run of a job (or reopen the unfinished run ``reopen``) and yield
    its id. The run ends FINISHED when the block completes, KILLED on KeyboardInterrupt
    and FAILED on any other exception, which is re-raised: an interrupted job is told
    apart from a broken one, and both are found again to resume."""
    if reopen is not None:
        tracker.reopen(reopen, tags)
        run_id = reopen
    else:
        run_id = tracker.start(key, name, tags)
    try:
        yield run_id
    except BaseException as e:
        tracker.finish(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish(run_id)


class ModelCache:
    """Loaded models keyed by their config node, device and memory layout, at most
    ``size`` of them (least recently used dropped first), so a sweep in one process
    loads each model once while a sweep over many models holds a bounded number."""

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"size={size} must be at least 1")
        self.size = size
        self._specs: OrderedDict[str, ModelSpec] = OrderedDict()

    def load(self, node: Any, device: torch.device, channels_last: bool = True) -> ModelSpec:
        """The model of config ``node`` on ``device``. Channels-last weights make
        convolutions faster on CPU and recent GPUs (inputs can stay NCHW); the numbers
        differ from contiguous weights only by float rounding."""
        from faithbench import models
        from faithbench.config import digest, entry_params

        params = entry_params(node)
        k = digest([node.name, params, str(device), channels_last])
        if k in self._specs:
            self._specs.move_to_end(k)
            return self._specs[k]
        if len(self._specs) >= self.size:  # free memory before loading the next one
            while len(self._specs) >= self.size:
                self._specs.popitem(last=False)
            # weights held in a reference cycle (a plugin's hooks) freed now, not at the
            # next full collection: one collection per model switch (~0.1 s in a sweep,
            # whose imports are frozen; up to ~0.8 s in a process that froze nothing)
            gc.collect()
        spec = models.load(node.name, **params)
        spec.model.to(device)
        if channels_last:
            spec.model.to(memory_format=torch.channels_last)
        self._specs[k] = spec
        return spec

    def clear(self) -> None:
        self._specs.clear()

    def __len__(self) -> int:
        return len(self._specs)


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present; on a multi-GPU host, the jobs of a sweep take the
    GPUs in turn (job number modulo GPU count), so parallel launchers spread out."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        n = torch.cuda.device_count()
        return torch.device(f"cuda:{hydra_job_num() % n}" if n > 1 else "cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but no CUDA device is available; use device=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None


def cpu_chunk_cap(images_224: Any, device: torch.device, size: int) -> int | None:
    """The cap on every ``chunk`` on CPU: ``cpu_chunk`` 224x224 images' worth of pixels at
    the model's input ``size`` (8 at 224, 98 at 64). CPU convolutions run fastest on
    batches whose activations stay in cache (1.5-2x for efficientnet_lite0 at 8 images
    rather than 128); tiny inputs need larger batches to amortise per-call overhead.
    None off CPU or when ``cpu_chunk`` is null."""
    if images_224 is None or device.type != "cpu":
        return None
    if isinstance(images_224, bool) or not isinstance(images_224, int) or images_224 < 1:
        raise ConfigError(f"cpu_chunk={images_224!r} must be a positive number of "
                          "224x224 images or null")
    return max(1, images_224 * 224 * 224 // (size * size))


def check_count(key: str, value: Any, least: int) -> None:
    """``value`` must be an integer >= ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key}={value!r} must be an integer >= {least}")


def check_pair(cfg: DictConfig, model_space: str, ds_space: str | None,
               model_classes: Sequence[str] = (), ds_classes: Sequence[str] = ()) -> None:
    """Raise IncompatibleError unless the model's and the dataset's label spaces have the
    same name and, where both class lists are known, the same classes in the same order
    (a dataset index must mean the model's output of that index)."""
    if ds_space is not None and ds_space != model_space:
        raise IncompatibleError(
            f"model {cfg.model.name!r} predicts {model_space!r} classes but dataset "
            f"{cfg.dataset.name!r} is labelled in {ds_space!r}: pick a matching pair")
    if (problem := class_order_problem(model_classes, ds_classes)) is not None:
        raise IncompatibleError(
            f"model {cfg.model.name!r} and dataset {cfg.dataset.name!r} both use {model_space!r} "
            f"labels but their classes differ: {problem}")


def select_indices(n: int, limit: int | None, subset_seed: int | None,
                   shard: int, num_shards: int) -> list[int]:
    """Dataset positions of this job: an optional subset of ``limit`` samples (the first
    ones, or a seeded random choice in dataset order), then every ``num_shards``-th one
    starting at ``shard``. The shards of one config partition its subset exactly."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"dataset.shard={shard} is not in [0, dataset.num_shards={num_shards})")
    if limit is not None and limit < 1:
        raise ConfigError(f"dataset.limit={limit} must be a positive number of samples or null")
    idx = np.arange(n)
    if limit is not None and limit < n:
        if subset_seed is None:
            idx = idx[:limit]
        else:
            idx = np.sort(np.random.default_rng(subset_seed).choice(n, limit, replace=False))
    return idx[shard::num_shards].tolist()


def hydra_job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.get("num", 0) or 0) if HydraConfig.initialized() else 0


def hydra_output_dir() -> str | None:
    """The Hydra sweep (or single-run) directory of this job, when run through Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return str(Path(hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.run.dir).resolve())
