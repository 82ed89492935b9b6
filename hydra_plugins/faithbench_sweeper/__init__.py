"""faithbench's sweeper (``faithbench.sweep``, config.yaml's ``hydra/sweeper``): Hydra
instantiates sweepers only from classes defined in the ``hydra_plugins`` namespace
package. Hydra's first plugin scan executes its core plugins' modules again; this
module is scanned after them, so the basic sweeper subclassed here is the one it keeps."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from faithbench.sweep import (ENV, ComposeOnce, digest_base, finished, freeze_startup, job_digest,
                              new_store, pause_gc, warm, write_finished)

log = logging.getLogger("faithbench")


class FaithbenchSweeper(BasicSweeper):
    """Hydra's basic sweeper, skipping finished jobs and composing each job once
    (``faithbench.sweep``)."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 skip_finished: bool = True) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.skip_finished = skip_finished
        self._loader: ComposeOnce | None = None
        self._warm = True  # the first launched batch warms the store and imports

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self._loader = ComposeOnce(hydra_context.config_loader)
        context = HydraContext(config_loader=self._loader, callbacks=hydra_context.callbacks)
        super().setup(hydra_context=context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """As the basic sweeper: every combination of the sweep's overrides, in batches
        of ``max_batch_size``; a batch's finished jobs are numbered after the jobs it
        launches."""
        thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
        resume_gc = pause_gc()  # until the imports are made (freeze_startup)
        try:
            return self._sweep(arguments, resume_gc)
        finally:
            gc.set_threshold(*thresholds)
            if not frozen:  # nothing was frozen before: a later call of this process collects it all
                gc.unfreeze()
            if resume_gc:
                gc.enable()

    def _sweep(self, arguments: list[str], resume_gc: bool) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self._loader is not None
        parser = OverridesParser.create(config_loader=self._loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        base = digest_base(self.config)
        returns: list[Sequence[JobReturn]] = []
        num = 0
        while not self.is_done():
            batch = [[*o, f"hydra.job.env_set.{ENV}={job_digest(base, o)}"]
                     for o in self.get_job_batch()]
            # a new SQLite store holds no finished run: its schema is made while composing
            done = {} if not self.skip_finished or new_store(self.config) else \
                finished(self.config, [_digest_of(o) for o in batch])
            todo = [o for o in batch if _digest_of(o) not in done]
            if todo:  # errors before anything runs; kept for the launcher
                in_process = _BASIC == f"{type(self.launcher).__module__}.{type(self.launcher).__name__}"
                # a later batch has nothing to warm: every core composes
                self._loader.compose_all(self.config, todo, (lambda: (
                    warm(self.config, in_process), freeze_startup(resume_gc))) if self._warm else None)
                self._warm = False
                results = self.launcher.launch(todo, initial_job_idx=num)
                for r in results:
                    _ = r.return_value  # raises if the job raised
                returns.append(results)
            skipped = [done[_digest_of(o)] for o in batch if _digest_of(o) in done]
            if skipped:
                log.info("%d of %d jobs finished already: skipped without composing them "
                         "(results read from their runs)", len(skipped), len(batch))
                write_finished(sweep_dir, skipped, num + len(todo))
            num += len(batch)
        return returns


# Hydra's launcher that runs the jobs in this process (compared by name: Hydra's plugin
# scan executes its core plugins' modules again, so the class object can differ)
_BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def _digest_of(overrides: Sequence[str]) -> str:
    return overrides[-1].rsplit("=", 1)[1]
