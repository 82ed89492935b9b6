"""Command line: ``faithbench [overrides]`` runs one job, ``faithbench -m ...`` sweeps,
``faithbench list`` shows the registered names."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from faithbench import schema
from faithbench.errors import ConfigError, IncompatibleError

log = logging.getLogger("faithbench")


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config that ``faithbench <overrides>`` would run, without running it (for
    scripts and notebooks: ``run(compose(["method=saliency"]))``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from faithbench.config import store_nodes

    store_nodes()  # entries registered since faithbench.conf was imported get their nodes too
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def _summary_line(name: str, res: dict[str, float], metric_names: list[str]) -> str:
    parts = []
    for m in metric_names:
        if m in res:
            lo, hi = (res.get(schema.stat_key(m, s), float("nan")) for s in ("ci_low", "ci_high"))
            parts.append(f"{m} {res[m]:.4f} [{lo:.4f}, {hi:.4f}]")
    n = int(res.get("n_samples", 0))
    return f"{name}: " + ", ".join(parts) + f" ({n} samples, {res.get('seconds', 0):.1f} s)"


def task(cfg: DictConfig) -> None:
    from faithbench.outside import display_name
    from faithbench.run import run

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    method = display_name(cfg.method, cfg.get("method_params"))
    dataset = display_name(cfg.dataset)
    name = f"{cfg.model.name}/{method}/{dataset}"
    summary: dict[str, Any] = {schema.MODEL: cfg.model.name, schema.METHOD: method,
                               schema.DATASET: dataset,
                               schema.SHARD: schema.shard_tag(cfg.dataset.get("shard", 0),
                                                              cfg.dataset.get("num_shards", 1))}
    try:
        results = run(cfg)
        summary.update(status="ok", results=results)
        log.info(_summary_line(name, results, list(cfg.metrics)))
    except ConfigError as e:  # an incompatible (model, dataset) pair is skipped, not failed
        skipped = isinstance(e, IncompatibleError)
        summary.update(status="skipped" if skipped else "failed", error=str(e))
        if not multirun:
            print(f"faithbench: error: {e}", file=sys.stderr)
            sys.exit(2)
        log.log(logging.INFO if skipped else logging.ERROR, "%s %s: %s", name,
                "skipped" if skipped else "failed", e)
    except Exception as e:  # keep the sweep going; the failure is listed at its end
        if not multirun:
            raise
        summary.update(status="failed", error=f"{type(e).__name__}: {e}")
        log.error("%s failed:\n%s", name, traceback.format_exc())
    finally:
        out = Path(hc.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, default=float, indent=1))


class SweepSummary(Callback):
    """Prints the results table of a sweep, lists its failed jobs and then exits with
    status 1 if there are any."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = [json.loads(p.read_text()) for p in
                sorted(Path(config.hydra.sweep.dir).glob("*/summary.json"),
                       key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)]
        skipped = [r for r in rows if r["status"] == "skipped"]
        rows = [r for r in rows if r["status"] != "skipped"]
        print(format_table(rows, list(config.metrics)))
        if skipped:
            print(f"({len(skipped)} jobs skipped: a model and a dataset whose label spaces "
                  "differ, or a method that does not apply to the model)")
        failed = [f"{r['model']}/{r['method']}/{r['dataset']}: {r['error']}"
                  for r in rows if r["status"] == "failed"]
        if failed:
            print(f"\n{len(failed)} of {len(rows)} jobs failed:", file=sys.stderr)
            for f in failed:
                print(f"  {f}", file=sys.stderr)
            # The exit status is decided here, the one place that sees every job of the
            # sweep (also those a launcher ran in other processes); Hydra lets it through.
            sys.exit(1)


def format_table(rows: list[dict[str, Any]], metric_names: list[str]) -> str:
    import pandas as pd

    table = []
    for r in rows:
        line = {t: r[t] for t in schema.IDENTITY}
        if r.get(schema.SHARD, schema.WHOLE) != schema.WHOLE:
            line[schema.SHARD] = r[schema.SHARD]
        res = r.get("results", {})
        for m in metric_names:
            if m in res:
                lo, hi = res[schema.stat_key(m, "ci_low")], res[schema.stat_key(m, "ci_high")]
                line[m] = f"{res[m]:.4f} [{lo:.4f}, {hi:.4f}]"
        line["n"] = int(res.get("n_samples", 0)) if r["status"] == "ok" else "failed"
        table.append(line)
    return pd.DataFrame(table).fillna("-").to_string(index=False) if table else "(no jobs)"


def list_names(argv: list[str]) -> int:
    """``faithbench list [kind]``: registered names with their metadata (read from
    ``faithbench.index`` when nothing changed since the last listing)."""
    import importlib.util

    from faithbench import index
    from faithbench.config import REGISTRY_KINDS, registry_index

    valid = ["models", "methods", "metrics", "datasets", "experiments", "visualizations"]
    kinds = argv or valid
    bad = [k for k in kinds if k not in valid]
    if bad:
        print(f"faithbench: error: unknown kind {bad[0]!r}; valid: {', '.join(valid)}", file=sys.stderr)
        return 2
    listed = index.read(registry_index)["list"] if set(kinds) & set(REGISTRY_KINDS) else {}
    for kind in kinds:
        print(f"{kind}:")
        if kind == "experiments":  # the folder, not the package (importing it stores nodes)
            conf = importlib.util.find_spec("faithbench.conf")
            exp = Path(next(iter(conf.submodule_search_locations))) / "experiment"
            for f in sorted(p.name for p in exp.iterdir() if p.name.endswith(".yaml")):
                print(f"  {f[:-5]}")
            continue
        for line in listed[kind]:
            print(line)
    return 0


def list_lines(kind: str) -> list[str]:
    """The lines ``faithbench list`` prints for registry ``kind`` (imports it)."""
    from faithbench import datasets, methods, metrics, models, visualize

    reg = {"models": models.MODELS, "methods": methods.METHODS,
           "metrics": metrics.METRICS, "datasets": datasets.DATASETS,
           "visualizations": visualize.VISUALIZATIONS}[kind]
    lines = []
    for n in reg.names():
        entry = reg.get(n)
        shown = entry.info.describe() if hasattr(entry.info, "describe") else vars(entry.info)
        flags = ", ".join(f"{k}={v}" for k, v in shown.items()
                          if v not in (False, None, frozenset(), {}, ()))
        lines.append(f"  {n:28s} [{entry.origin}] {flags}")
    for n, why in sorted(reg.broken().items()):
        lines.append(f"  {n:28s} [broken] {why}")
    if kind in ("methods", "metrics", "datasets") and "callable" not in reg.names():
        group = kind[:-1] if kind != "metrics" else "metric.callable"
        lines.append(f"  {'callable':28s} any module:function: {group}.fn=module:function")
    return lines


@hydra.main(version_base="1.3", config_path="pkg://faithbench.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    task(cfg)


def main(argv: list[str] | None = None) -> None:
    # the command line of this process: the console script or `python -m faithbench`
    # (not a call from Python, nor a script or notebook that calls main())
    argv_is_process = argv is None and Path(sys.argv[0] if sys.argv else "").name in _COMMANDS
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "list":
        _exit(list_names(argv[1:]), argv_is_process)
    if argv and argv[0] == "report":
        from faithbench.report.cli import main as report_main

        _exit(report_main(argv[1:]), argv_is_process)
    if argv and argv[0] == "visualize":
        from faithbench.visualize._job import main as visualize_main

        _exit(visualize_main(argv[1:]), argv_is_process)
    if argv and argv[0] == "roar":  # dataset-level remove-and-retrain (faithbench.roar)
        from faithbench.roar import main as roar_main

        _exit(roar_main(argv[1:]), argv_is_process)
    if {"--help", "-h"} & set(argv):  # describes the config only: the page is kept in the index
        from faithbench import index

        sys.stdout.write(index.text(["--help", *argv], lambda: _help_page(argv)))
        return
    from faithbench import config

    # A fresh process composes from the config nodes kept in ``faithbench.index`` (what
    # the files and plugins register; the runner imports only the entries a job uses):
    # importing every entry to generate them took ~4 s per command. A process whose
    # registries are imported already (a script that registered entries) composes from them.
    config.NODES_FROM_INDEX = not any(m in sys.modules for m in _REGISTRIES)
    _register_sweeper()
    _hydra_main()  # a sweep with failed jobs exits 1 from SweepSummary
    if argv_is_process:
        _exit_now()


def _exit(code: int, now: bool) -> NoReturn:
    """``sys.exit(code)``; for the command itself (``now``) without the teardown
    (``_exit_now``)."""
    if now:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int = 0) -> None:
    """End the command's process once its work is done, with status ``code``: the exit
    handlers run and the output is flushed as at a normal exit, but the interpreter does
    not tear down its modules one by one (1-2 s with torch, MLflow and pandas loaded;
    ~1 s after a report). Only when no other non-daemon thread runs (a normal exit
    would wait for it)."""
    import atexit
    import os
    import threading

    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return  # daemon threads (tqdm's monitor) are not waited for at a normal exit either
    atexit._run_exitfuncs()  # logging.shutdown among them: log files flushed and closed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_COMMANDS = ("faithbench", "faithbench.exe", "faithbench-script.py", "__main__.py")
_REGISTRIES = ("faithbench.methods", "faithbench.metrics", "faithbench.models",
               "faithbench.datasets")


def _register_sweeper() -> None:
    """Declare config.yaml's sweeper to Hydra, which finds plugins by walking the
    ``hydra_plugins`` folders and cannot walk an editable install's."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # its first scan comes before the import: see the module
    from hydra_plugins.faithbench_sweeper import FaithbenchSweeper

    plugins.register(FaithbenchSweeper)


def _help_page(argv: list[str]) -> str:
    """Hydra's help page for ``argv``, composed from config nodes read from the index."""
    import contextlib
    import io

    from faithbench import config

    config.NODES_FROM_INDEX = True
    buf, saved = io.StringIO(), sys.argv
    sys.argv = [saved[0] if saved else "faithbench", *argv]
    try:
        with contextlib.redirect_stdout(buf):
            _hydra_main()
    except SystemExit as e:  # Hydra ends its help with sys.exit(0)
        if e.code not in (0, None):
            sys.stdout.write(buf.getvalue())
            raise
    finally:
        sys.argv = saved
    return buf.getvalue()


if __name__ == "__main__":
    main()
