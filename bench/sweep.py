"""The sweeper of ``faithbench -m``: Hydra's basic sweeper (same overrides, batches,
job numbers and launchers) with these savings.

1. **Finished jobs are skipped before their configs are composed.** Every job of a sweep
   is handed a *job digest*: a hash of everything that decides its composed config when
   the sweep starts (its override list and the sweep's Hydra overrides, the original
   working directory, the config sources and the files of the file-based ones, the
   environment variables that configs or model loaders read, and
   ``faithbench.index.fingerprint()``: every source and config file of faithbench and of
   its plugins, the installed distributions and the interpreter). When the job's run
   finishes, or is found finished, it carries the tag ``faithbench.job.<digest>``,
   whose value lists the size and modification time of the files that its run key
   reads beyond the config: the model's weights (``ModelSpec.weights_files``) and the
   source of outside code (plugins, dotted paths). A sweep reads every finished run in
   one query and skips each job whose digest tags a finished, not superseded run whose
   files are unchanged: no config composed, no model loaded, no dataset built. Any
   other job takes the runner's own path, which skips it by run key if that matches
   (and tags the run for the next sweep). A model whose weights come from no file
   (``weights_files`` None: a module passed from Python, a factory) is never skipped
   this way; ``force=true`` is never skipped.
2. **Each job's config is composed once.** Hydra composes every job twice: once to
   validate the batch before anything runs, once to launch it. The configs composed to
   validate are kept (pickled, about 20 kB each) and handed to the launcher. A job's
   config keeps the nodes of the metrics it scores only (``selected_metrics_only``: its
   run logs and keys no others), so its ``.hydra/config.yaml`` lists those.
3. **The batch is composed on the other CPU cores** (forked processes, where the
   platform forks; serially elsewhere), while this process does what the first job
   would wait for (``warm``: the tracking store, created here when it is a new SQLite
   file, and the runner's imports when the jobs run in this process), then takes jobs
   from the same counter. A job whose composition fails is composed again here, in
   order, so the sweep stops before any job runs with the error a serial composition
   raises. Hydra copies its config repository for every composition, and with it the
   ConfigStore (the structured configs: Hydra's own, the registries' method and metric
   nodes), about a quarter of a composition's time; while the sweeper composes, a copy
   of that process-wide singleton is the store itself, and each packaged YAML file is
   parsed once (``config_store_shared``).
4. **The garbage collector skips the imports and collects the oldest objects less
   often.** It is off while the sweep starts and, once ``warm`` has made the imports,
   every object alive is frozen out of its reach (``pause_gc``, ``freeze_startup``);
   while the jobs run, a full collection waits for ``FULL_COLLECTION_EVERY``
   collections of the middle generation (Python's default: 10). What a job leaves in
   reference cycles is its configs' nodes (measured; metrics hold the scorer weakly, so
   its batches and cache are freed when the job ends), and a model dropped from the
   model cache is collected at once. The sweeper restores the thresholds and, unless
   something froze objects before it, unfreezes what it froze when it ends.

``hydra.sweeper.skip_finished=false`` turns the first off. The sweeper's class is
``hydra_plugins.faithbench_sweeper.FaithbenchSweeper`` (where Hydra looks for plugins);
what it reads and writes is here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import multiprocessing
import os
import pickle
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("faithbench")

ENV = "FAITHBENCH_JOB"  # the job digest, handed to each job as hydra.job.env_set.<ENV> (config.yaml)
TAG = "faithbench.job."  # + digest: the tag of a run finished by that job; value: its files
# environment variables that can change a composed config or the files a model loads
_ENV_PREFIXES = ("FAITHBENCH_", "TORCH_", "HF_", "HUGGINGFACE_")
_ENV_NAMES = ("XDG_CACHE_HOME",)
_OC_ENV = re.compile(r"oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class SweeperConf:
    _target_: str = "hydra_plugins.faithbench_sweeper.FaithbenchSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    skip_finished: bool = True


def write_finished(sweep_dir: Path, runs: list[Any], start: int) -> None:
    """A ``summary.json`` per skipped job, as a launched job writes it
    (``faithbench.cli.task``; ``faithbench.cli.SweepSummary`` lists them)."""
    from faithbench import schema

    for i, r in enumerate(runs):
        summary: dict[str, Any] = {t: r.tags.get(t, "") for t in schema.IDENTITY}
        summary[schema.SHARD] = r.tags.get(schema.SHARD, schema.WHOLE)
        summary.update(status="ok", results=dict(r.metrics), run_id=r.run_id, finished_already=True)
        out = sweep_dir / str(start + i)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, default=float, indent=1))


class ComposeOnce:
    """The config loader that the launcher gets: hands back each config composed to
    validate the batch (once; a config it does not hold is composed as usual)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._held: dict[tuple[str, ...], bytes] = {}

    def compose(self, master: DictConfig, overrides: list[str]) -> None:
        with config_store_shared():
            self._held[tuple(overrides)] = _pickled(self._loader, master, overrides)

    def compose_all(self, master: DictConfig, jobs: list[list[str]],
                    meanwhile: Callable[[], Any] | None = None) -> None:
        """``compose`` each of ``jobs`` (override lists) on ``compose_workers`` forked
        processes, calling ``meanwhile()`` here while they work; once that is done this
        process takes jobs too, from the same counter. The same configs as composing them
        one by one. The first job, in order, that failed to compose is composed again
        here, which raises the error of a serial composition; so is a job whose worker
        died before handing its config back (each worker sends on its own pipe: one
        that dies mid-send loses only its own message)."""
        workers = compose_workers(len(jobs))
        if not workers:
            if meanwhile is not None:
                meanwhile()
            for overrides in jobs:
                self.compose(master, overrides)
            return
        global _FORKED
        ctx = multiprocessing.get_context("fork")
        pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
        taken = ctx.Value("i", 0)  # the next job's index, for the workers and this process
        _FORKED = (self._loader, master, jobs, taken, [w for _, w in pipes])  # never pickled
        sys.stdout.flush()  # a forked worker flushes what it inherited as it exits
        sys.stderr.flush()
        held: dict[int, bytes | None] = {}
        procs: list[Any] = []
        try:
            with config_store_shared():
                for k in range(workers):
                    procs.append(ctx.Process(target=_compose_worker, args=(k,), daemon=True))
                    procs[-1].start()
                for _, w in pipes:
                    w.close()  # each pipe ends when its worker does
                # received as they come (a worker waits while a sent config is unread)
                collector = threading.Thread(target=_collect, args=([r for r, _ in pipes], held),
                                             daemon=True)
                collector.start()
                if meanwhile is not None:
                    meanwhile()
                while (i := _take(taken, len(jobs))) is not None:
                    held[i] = _composed(self._loader, master, jobs[i])
                collector.join()
        finally:
            _FORKED = None
            for proc in procs:  # ended already unless meanwhile() raised
                if proc.is_alive():
                    proc.terminate()
                proc.join()
            for r, w in pipes:
                r.close()
                w.close()
        for i, overrides in enumerate(jobs):
            cfg = held.get(i)
            if cfg is None:  # raises here as it did there (or composes: kept)
                self.compose(master, overrides)
            else:
                self._held[tuple(overrides)] = cfg

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        held = self._held.pop(tuple(sweep_overrides), None)
        if held is not None:
            return pickle.loads(held)
        return selected_metrics_only(self._loader.load_sweep_config(master_config, sweep_overrides))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_held"):  # unpickling
            raise AttributeError(name)
        return getattr(self._loader, name)

    def __getstate__(self) -> dict[str, Any]:
        """Sent to other processes (parallel launchers) without the held configs."""
        return {"_loader": self._loader, "_held": {}}


@contextlib.contextmanager
def config_store_shared() -> Iterator[None]:
    """Inside the block (and in processes forked inside it), ``copy.deepcopy`` of Hydra's
    ConfigStore returns the store itself, and each YAML file of a package's configs
    (faithbench's, Hydra's) is parsed once: a composition gets a copy of what the first
    one read. Hydra's ``CachingConfigRepository`` copies the config repository for each
    composition, so that setting a job's search path leaves it unchanged, and its
    structured config source holds the store: copying it was about a quarter of each
    composition (0.12 -> 0.09 s per quick-preset job); parsing its ten YAML files took
    18 ms of the rest, copying them takes 4. The store is a process-wide singleton that
    composing only reads, the files do not change while a sweep composes (the configs
    are the same, tested)."""
    from hydra._internal.core_plugins.importlib_resources_config_source import \
        ImportlibResourcesConfigSource as Source
    from hydra.core.config_store import ConfigStore

    if "__deepcopy__" in vars(ConfigStore):  # Hydra's own now, or nested
        yield
        return
    ConfigStore.__deepcopy__ = _itself  # type: ignore[attr-defined]
    read = Source._read_config
    parsed: dict[tuple[str, str], Any] = {}

    def read_once(source: Any, res: Any) -> Any:
        key = (source.path, str(res))
        if key not in parsed:
            parsed[key] = read(source, res)
        held = copy.copy(parsed[key])
        held.config, held.header = copy.deepcopy(held.config), dict(held.header)
        return held

    Source._read_config = read_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        del ConfigStore.__deepcopy__  # type: ignore[attr-defined]
        Source._read_config = read  # type: ignore[method-assign]


def _itself(obj: Any, memo: dict[int, Any]) -> Any:
    return obj


_WORKERS = "FAITHBENCH_COMPOSE_WORKERS"  # how many (no part of a job's digest: configs unchanged)
_FORKED: tuple[Any, ...] | None = None  # (loader, master config, jobs, counter, pipes) of compose_all


def _take(taken: Any, n: int) -> int | None:
    """The next job's index from the counter shared with the forked workers (None when
    all ``n`` are taken)."""
    with taken.get_lock():
        i = taken.value
        if i >= n:
            return None
        taken.value = i + 1
        return i


def _pickled(loader: Any, master: DictConfig, overrides: list[str]) -> bytes:
    """The pickled config of one job (``selected_metrics_only``)."""
    cfg = loader.load_sweep_config(master_config=master, sweep_overrides=overrides)
    return pickle.dumps(selected_metrics_only(cfg))


def _composed(loader: Any, master: DictConfig, overrides: list[str]) -> bytes | None:
    """``_pickled``, None when composing fails (composed again to raise, in order)."""
    try:
        return _pickled(loader, master, overrides)
    except Exception:
        return None


def selected_metrics_only(cfg: DictConfig) -> DictConfig:
    """``cfg`` (a job's composed config) with ``metric`` holding the nodes of the metrics
    it scores (``metrics``) only, as its run logs them (``run.logged_config``) and as its
    run key reads them: composing puts every registered metric's node there, 83% of the
    config for the quick preset, and Hydra copies, writes and keeps each job's config
    (its ``run_job`` took 62 -> 24 ms per job with the unselected nodes dropped). Read
    without resolving anything; kept whole when the list holds an interpolation, or an
    interpolation anywhere could read a dropped node (one that names ``metric``, or a
    relative one in a selected node)."""
    from omegaconf import open_dict, read_write

    if "metric" not in cfg or OmegaConf.is_interpolation(cfg, "metric"):
        return cfg
    raw = OmegaConf.to_container(cfg, resolve=False)
    names, every = raw.get("metrics"), raw["metric"]
    if not isinstance(names, list) or not all(isinstance(n, str) and "${" not in n for n in names):
        return cfg
    if not isinstance(every, dict):
        return cfg
    # (the overrides Hydra lists, and joins into a name, are in the config already; the
    # help pages are text)
    hydra = {k: v for k, v in (raw.get("hydra") or {}).items() if k not in ("help", "hydra_help", "overrides")}
    hydra["job"] = {k: v for k, v in (hydra.get("job") or {}).items() if k != "override_dirname"}
    rest = {k: v for k, v in raw.items() if k not in ("metric", "hydra")}
    if _reads(rest, relative=False) or _reads(hydra, relative=False) or \
            _reads({n: every[n] for n in names if n in every}, relative=True):
        return cfg
    node = cfg.metric
    with read_write(node), open_dict(node):
        for name in [k for k in every if k not in names]:
            del node[name]
    return cfg


def _reads(value: Any, relative: bool) -> bool:
    """Whether ``value`` (a config read without resolving) holds an interpolation that
    could read a metric's node: one that names ``metric``, or (``relative``) a relative one."""
    if isinstance(value, dict):
        return any(_reads(v, relative) for v in value.values())
    if isinstance(value, list):
        return any(_reads(v, relative) for v in value)
    return isinstance(value, str) and "${" in value and ("metric" in value or (relative and "${." in value))


def _compose_worker(k: int) -> None:
    """Forked worker ``k`` of ``compose_all``: composes the jobs it takes from the
    shared counter and sends back (index, pickled config or None) on its own pipe. The
    collector is on again here (the sweep pauses it while it starts), with what the
    parent left frozen."""
    import gc

    assert _FORKED is not None
    loader, master, jobs, taken, writers = _FORKED
    gc.freeze()
    gc.enable()
    for j, w in enumerate(writers):
        if j != k:
            w.close()
    while (i := _take(taken, len(jobs))) is not None:
        writers[k].send((i, _composed(loader, master, jobs[i])))


def _collect(readers: list[Any], held: dict[int, bytes | None]) -> None:
    """Receive the workers' configs into ``held`` until every worker's pipe has ended (a
    job whose worker died before or while sending is left out: composed again)."""
    from multiprocessing.connection import wait

    open_ = list(readers)
    while open_:
        for r in wait(open_):
            try:
                i, cfg = r.recv()
            except Exception:  # EOFError: ended; a message cut short by a dying worker
                open_.remove(r)
                continue
            held[i] = cfg


def compose_workers(jobs: int) -> int:
    """How many processes ``compose_all`` forks for ``jobs`` jobs: one per CPU core this
    process may use but one, the core of this process (which does its own work first,
    ``warm``: the longer of the two on 2 cores, and then composes too), at most one per
    job; ``FAITHBENCH_COMPOSE_WORKERS`` sets the number. 0 (compose here) for fewer
    than 2 jobs and where forking is not safe (``forks.can_fork``: Linux only)."""
    from faithbench import forks

    if not forks.can_fork() or jobs < 2:
        return 0
    n = min(int(os.environ.get(_WORKERS) or forks.cores() - 1), jobs)
    return max(n, 0)


def new_store(config: DictConfig) -> bool:
    """Whether ``config``'s tracking store is a SQLite file that does not exist yet (no
    run can be finished in it)."""
    from faithbench.stores import resolve_uri, sqlite_file

    uri = config.tracking.get("uri")
    db = sqlite_file(resolve_uri(None if uri is None else str(uri)))
    return db is not None and not db.exists()


def warm(config: DictConfig, in_process: bool) -> None:
    """What the first launched job would otherwise wait for: the tracking store (opened,
    and its schema created when it is new) and, when the jobs run in this process,
    the runner's imports (torch, the registries)."""
    from faithbench import tracking

    uri = config.tracking.get("uri")
    tracking.tracker(None if uri is None else str(uri), str(config.tracking.experiment))
    if in_process:
        import faithbench.run  # noqa: F401


FULL_COLLECTION_EVERY = 100  # generation-1 collections between full ones while the jobs run


def pause_gc() -> bool:
    """Turn Python's cyclic garbage collector off while a sweep starts (its full
    collections walk every object of the imports: four of them, 0.8 s, before the
    first job of the quick preset); whether it was on. ``freeze_startup`` turns it on."""
    import gc

    was = gc.isenabled()
    gc.disable()
    return was


def freeze_startup(resume: bool) -> None:
    """Once a sweep's process has made its imports (``warm``): move every object alive
    (the imported modules: torch, MLflow, Hydra, the registries) out of the collector's
    reach (``gc.freeze``: they live as long as the process) and turn the collector back
    on when ``resume``, with a full collection after ``FULL_COLLECTION_EVERY``
    collections of the middle generation rather than Python's 10. Its full collections
    otherwise walk them all again and again, 0.15-0.3 s each with them loaded; the
    configs composed next and the jobs' objects are collected as before. The modules
    that jobs import later (timm, a method's peer library) and the configs Hydra keeps
    for each job add up to ~300,000 objects in the quick preset: a full collection of
    them took 0.12 s, eleven times over its 46 jobs, while what they leave in cycles is
    a couple of thousand config nodes per job (measured). The sweeper restores
    Python's thresholds when it ends. (Python 3.14's incremental collector has no such
    threshold: the third value is ignored there.)"""
    import gc

    gc.freeze()
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
    if resume:
        gc.enable()


def digest_base(config: DictConfig) -> list[Any]:
    """What every job digest of the sweep ``config`` shares (see the module's docstring)."""
    from faithbench import index

    hc = config.hydra
    sources = [[str(s.provider), str(s.schema), str(s.path), _source_files(str(s.schema), str(s.path))]
               for s in hc.runtime.config_sources]
    hydra_overrides = [str(o) for o in hc.overrides.hydra]
    texts = " ".join(hydra_overrides) + json.dumps(sources)
    return [1, index.fingerprint(), str(hc.runtime.cwd), hydra_overrides, sources, texts]


def _source_files(schema: str, path: str) -> Any:
    """Size, time and the ``oc.env`` names read by each YAML file of a config source that
    faithbench's fingerprint does not cover (a ``--config-dir``, a plugin's package)."""
    import importlib.util

    from faithbench.index import _stat_tree

    if schema == "file":
        folder = Path(path)
    elif schema == "pkg" and path != "faithbench.conf":
        spec = importlib.util.find_spec(path)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            return None
        folder = Path(locations[0])
    else:  # faithbench.conf and the ConfigStore: in the fingerprint
        return None
    if not folder.is_dir():
        return None
    files = _stat_tree(folder, (".yaml", ".yml"))
    names = sorted({n for f in files for n in _OC_ENV.findall((folder / f[0]).read_text())})
    return [files, names]


def job_digest(base: list[Any], overrides: Sequence[str]) -> str:
    """The digest of the job with these sweep overrides (``base``: ``digest_base``)."""
    from faithbench.config import digest

    fingerprint, cwd, hydra_overrides, sources, texts = base[1:]
    names = set(_OC_ENV.findall(texts + " ".join(overrides)))
    for s in sources:
        names.update(s[3][1] if s[3] else ())
    env = {k: v for k, v in os.environ.items() if k not in (ENV, _WORKERS)
           and (k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES or k in names)}
    return digest([base[0], fingerprint, cwd, hydra_overrides, sources, list(overrides),
                   sorted(env.items())])[:24]


def finished(config: DictConfig, digests: list[str]) -> dict[str, Any]:
    """The finished, not superseded run (a ``report.runs.RunInfo``) of each of these job
    digests whose files are unchanged, among the latest finished run of each run key
    (one query for the whole experiment of ``config``'s store)."""
    from faithbench import schema

    wanted = set(digests)
    out: dict[str, Any] = {}
    for run in _finished_runs(config) if wanted else []:
        if run.tags.get(schema.SUPERSEDED) == "true":
            continue
        for k, v in run.tags.items():
            d = k[len(TAG):] if k.startswith(TAG) else None
            if d in wanted and d not in out and files_unchanged(v):
                out[d] = run
    return out


def _finished_runs(config: DictConfig) -> list[Any]:
    """The latest finished run of each run key in ``config``'s experiment (as
    ``Tracker.finished_runs``, in its order: start time descending, then run id): read
    straight from a SQLite store (``report.runs.sqlite_runs``: a sweep whose jobs are all
    finished never imports MLflow, about half of its time), else through MLflow."""
    from faithbench import schema
    from faithbench.errors import ConfigError
    from faithbench.report.runs import RunInfo, sqlite_runs
    from faithbench.stores import resolve_uri, sqlite_file

    uri, experiment = config.tracking.get("uri"), str(config.tracking.experiment)
    uri = None if uri is None else str(uri)
    resolved = resolve_uri(uri)
    db = sqlite_file(resolved)
    if db is not None:
        try:
            runs = sqlite_runs(db, resolved, [experiment], benchmark=False)
        except ConfigError:  # no such experiment yet
            return []
        if runs is not None:
            latest: dict[str, Any] = {}
            for r in sorted(runs, key=lambda r: (-r.start_time, r.run_id)):  # no start time (0) last
                if schema.RUN_KEY in r.tags:
                    latest.setdefault(r.tags[schema.RUN_KEY], r)
            return list(latest.values())
    from faithbench import tracking

    tracker = tracking.tracker(uri, experiment)
    if not tracker.exists():
        return []
    return [RunInfo.of(r) for r in tracker.finished_runs().values()]


def files_unchanged(value: str) -> bool:
    """Whether every file listed in a job tag's value (``files_tag``) still has its size
    and modification time."""
    try:
        files = json.loads(value)
        return all(_stat(path) == [size, mtime] for path, size, mtime in files)
    except (ValueError, TypeError):
        return False


def _stat(path: str) -> list[int | None]:
    try:
        st = os.stat(path)
    except OSError:  # absent: recorded too (a file that appears can change the choice)
        return [None, None]
    return [st.st_size, st.st_mtime_ns]


def files_tag(files: Sequence[str]) -> str:
    """The value of a job tag: ``[[path, size, mtime_ns], ...]`` of these files (size
    and time null for an absent one)."""
    return json.dumps([[os.path.abspath(f), *_stat(os.path.abspath(f))] for f in files])


def this_job() -> str | None:
    """The digest the sweep gave the running job (None outside a sweep)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    value = HydraConfig.get().job.env_set.get(ENV)
    return str(value) if value else None
