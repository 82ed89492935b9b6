"""Config plumbing shared by the runner: entry config nodes generated from signatures,
entry parameters, context filling, run keys."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from faithbench.errors import ConfigError

# Keys of a dataset node that the runner applies itself (all datasets share them).
DATASET_KEYS = ("name", "shard", "num_shards", "limit", "subset_seed")
# Top-level keys that never change the numbers (performance, I/O, bookkeeping).
NOT_IN_KEY = ("force", "device", "batch_size", "num_workers", "part_size", "cache",
              "out_dir", "tracking", "figures", "hydra", "published", "channels_last",
              "cpu_chunk")
# Entry parameters that only trade speed for memory; results are invariant to them (tested).
PERF_PARAMS = frozenset({"chunk", "internal_batch_size"})
# Bump when a change in the harness changes the numbers of an unchanged config.
PROTOCOL_VERSION = 2  # 2: maps scored at float32 (no fp16 cache quantisation); ties parameter


def to_dict(node: Any) -> dict[str, Any]:
    """A plain, resolved dict from a DictConfig (or a dict)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node or {})


def entry_params(node: Any, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    return {k: v for k, v in to_dict(node).items() if k not in drop}


def fill_context(fn: Callable[..., Any], params: dict[str, Any],
                 context: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check ``params`` against ``fn``'s signature and its declared checks (unknown
    names, types, choices, ranges: ``faithbench.params``), then fill each ``context``
    value (the runner passes the names the entry declares in ``register(context=...)``)
    whose parameter is absent or None."""
    from faithbench.params import check_params
    from faithbench.types import RUNNER_CONTEXT

    sig = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())
    own = list(config_params(fn))
    bad = [k for k in params if k not in sig and not takes_any]
    if bad:
        raise ConfigError(f"{what} has no parameter {bad[0]!r}. Valid parameters: {', '.join(own)}.")
    check_params(fn, params, what)  # the declared checks, before any run is opened
    for k in RUNNER_CONTEXT & context.keys():
        if params.get(k) is not None:
            raise ConfigError(f"{what}: {k}={params[k]!r} cannot be set; the runner fills "
                              f"{k} (leave it null)")
    out = dict(params)
    for k, v in context.items():
        if out.get(k) is None:
            out[k] = v
    return out


def config_params(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The parameters of an entry that a config sets: all but the data arguments and
    ``*args``/``**kwargs``, in signature order."""
    from faithbench.params import DATA_ARGS

    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p for n, p in inspect.signature(fn).parameters.items()
            if p.kind in plain and n not in DATA_ARGS}


def entry_node(name: str, fn: Callable[..., Any], skip: int = 0) -> dict[str, Any]:
    """The config node of an entry: ``name``, then every parameter (but the first
    ``skip``: a dataset's ``preprocess``) with its signature default (tuples as lists;
    ``???``, Hydra's mandatory value, where there is no default). Context parameters are
    null: the runner fills them."""
    node: dict[str, Any] = {"name": name}
    for k, p in list(config_params(fn).items())[skip:]:
        node[k] = "???" if p.default is p.empty else _plain(p.default, f"{name}.{k}")
    return node


def _plain(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return [_plain(e, where) for e in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(e, where) for k, e in v.items()}
    raise TypeError(f"{where}: default {v!r} is not a config value (None, bool, int, float, "
                    "str, or a list or dict of them)")


def store_nodes(from_index: bool = False) -> None:
    """Put a node per registered method (group ``method``) in Hydra's ConfigStore, and
    the config ``metric_nodes`` that holds every metric's node at ``metric.<name>``
    (config.yaml's defaults list includes it); also a node per
    model and dataset that has no YAML file (plugins), and the ``callable`` nodes that
    name a function by its path. Run when ``faithbench.conf`` is imported, and again by
    ``cli.compose`` so that entries registered later in the process (a notebook) are
    composable too. ``from_index``: the nodes as ``faithbench.index`` holds them, without
    importing the registries (``faithbench --help``; runs compose from the registries)."""
    from hydra.core.config_store import ConfigStore

    if from_index:
        from faithbench import index

        nodes = index.read(registry_index)["nodes"]
    else:
        nodes = entry_nodes()
    # Metric nodes go into one node that holds every metric's node at ``metric.<name>``,
    # not into a config group with one defaults-list entry per metric: Hydra composes
    # each job's config twice in a sweep and copies the whole store for every config
    # group it lists, and ~60 group defaults cost ~0.5 s per composition on 2 CPU cores
    # (the composed config is the same either way).
    cs = ConfigStore.instance()
    every = OmegaConf.create({"metric": {}})
    for group, name, node, takes_any in nodes:
        if group == "metric":
            every.metric[name] = _open(node, takes_any)
        else:
            cs.store(group=group, name=name, node=_open(node, takes_any), provider="faithbench")
    cs.store(name="metric_nodes", provider="faithbench", node=every)
    from faithbench.sweep import SweeperConf  # config.yaml's sweeper

    cs.store(group="hydra/sweeper", name="faithbench", node=SweeperConf, provider="faithbench")


def entry_nodes() -> list[tuple[str, str, dict[str, Any], bool]]:
    """(group, name, node, takes any key) of every config node generated from the
    registries: methods and metrics, models and datasets without a YAML file, and the
    ``callable`` nodes (metric nodes in registry order, ``callable`` last)."""
    from faithbench import datasets, methods, metrics, models
    from faithbench.outside import DOTTED

    out = []
    for group, reg in (("method", methods.METHODS), ("metric", metrics.METRICS)):
        for e in reg.entries():
            out.append((group, e.name, entry_node(e.name, e.fn), _takes_any(e.fn)))
    for group, entries, shared in (("model", models.MODELS.entries(), {}),
                                   ("dataset", datasets.DATASETS.entries(), DATASET_DEFAULTS)):
        for e in entries:
            if not _has_yaml(group, e.name):
                node = {**entry_node(e.name, e.fn, skip=1 if group == "dataset" else 0), **shared}
                out.append((group, e.name, node, _takes_any(e.fn)))
    dotted = {"method": {"fn": None, "label": None},
              "metric": {"fn": None, "label": None, "higher_is_better": None, "needs": []},
              "dataset": {"fn": None, **DATASET_DEFAULTS}}
    for group, keys in dotted.items():
        out.append((group, DOTTED, {"name": DOTTED, **keys}, True))
    return out


def registry_index() -> dict[str, Any]:
    """What ``faithbench.index`` keeps: the config nodes, ``faithbench list``'s lines and
    the entries' facts the report reads (``faithbench.report.facts``)."""
    from faithbench.cli import list_lines
    from faithbench.report.facts import indexed

    return {"nodes": entry_nodes(), "list": {k: list_lines(k) for k in REGISTRY_KINDS},
            "facts": indexed()}


# ``faithbench.conf`` takes its nodes from ``faithbench.index`` (set by the command line, ``faithbench.cli.main``).
NODES_FROM_INDEX = False
REGISTRY_KINDS = ("models", "methods", "metrics", "datasets", "visualizations")


# The shared keys of a dataset node (DATASET_KEYS but ``name``) and their defaults.
DATASET_DEFAULTS = {"shard": 0, "num_shards": 1, "limit": None, "subset_seed": None}


def _has_yaml(group: str, name: str) -> bool:
    from importlib import resources

    return (resources.files("faithbench.conf") / group / f"{name}.yaml").is_file()


def _takes_any(fn: Callable[..., Any]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _open(node: dict[str, Any], takes_any: bool) -> Any:
    """``node`` as a config that takes keys it does not list (Hydra's struct mode off for
    it alone) when its function takes them: ``**kwargs``, or no function (a ``callable``
    node, whose keys are the parameters of the function it names)."""
    if not takes_any:
        return node
    cfg = OmegaConf.create(node)
    OmegaConf.set_struct(cfg, False)
    return cfg


def cap_perf(fn: Callable[..., Any], params: dict[str, Any], cap: int | None) -> dict[str, Any]:
    """``params`` with every performance parameter of ``fn`` (``chunk``,
    ``internal_batch_size``; the signature's default when unset) at most ``cap``.
    The runner applies it on CPU (see ``jobs.cpu_chunk_cap``); results do not depend on
    these parameters (tested)."""
    if cap is None:
        return params
    sig = inspect.signature(fn).parameters
    out = dict(params)
    for k in PERF_PARAMS & sig.keys():
        v = out.get(k, sig[k].default)
        if isinstance(v, int) and not isinstance(v, bool) and v > int(cap):
            out[k] = int(cap)
    return out


def run_key(cfg: DictConfig, weights_id: str, shard: bool = True,
            code: Mapping[str, Any] | None = None) -> str:
    """Hash of everything that changes the numbers of a run. With ``shard=False`` the
    dataset shard is left out: the key that all shards of one run share (the group key
    under which reports merge them). ``code``: the identity of the job's outside code
    (``faithbench.outside.identity``), absent for built-ins so their keys never change."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_KEY}
    if not shard:
        d["dataset"] = {k: v for k, v in d["dataset"].items() if k not in ("shard", "num_shards")}
    d["metric"] = {m: d.get("metric", {}).get(m, {}) for m in d.get("metrics", [])}
    d["metrics"] = sorted(d.get("metrics", []))
    d["weights_id"] = weights_id
    d["protocol"] = PROTOCOL_VERSION
    if code:
        d["code"] = dict(code)
    return digest(strip_perf(d))[:16]


def strip_perf(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: strip_perf(v) for k, v in d.items() if k not in PERF_PARAMS}
    if isinstance(d, list):
        return [strip_perf(v) for v in d]
    return d


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
