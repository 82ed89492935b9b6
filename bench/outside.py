"""Entries from outside faithbench, as the runner selects them.

A config node names an entry by its registry key (a built-in or a plugin), or, for
scripts and notebooks, by a dotted path: ``method=callable method.fn=my_module:my_method``
(likewise ``dataset=callable dataset.fn=...`` and a metric at ``metric.callable.fn=...``).
The other keys of a ``callable`` node are the function's parameters, checked against the
loaded function's signature before any run opens. Outside code is identified in run and
cache keys by :func:`faithbench.plugins.source_identity`, and tried on one sample before
a run opens (:mod:`faithbench.probe`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faithbench.config import config_params, to_dict
from faithbench.errors import ConfigError
from faithbench.params import checked
from faithbench.plugins import load_object, object_path, source_identity
from faithbench.registry import Entry, Registry
from faithbench.types import MetricInfo

DOTTED = "callable"  # the option of the method, metric and dataset groups naming a function
# Keys of a ``callable`` node that are not the function's parameters, per kind.
OWN_KEYS = {"method": ("name", "fn", "label"),
            "metric": ("name", "fn", "label", "higher_is_better", "needs"),
            "dataset": ("name", "fn")}


@dataclass(frozen=True)
class Selected:
    """An entry chosen by a config node: ``name`` is what runs, tags and leaderboards
    show (the registry key; for a dotted path its ``label``, else the method's
    ``module:function`` path or the metric's function name)."""

    name: str
    entry: Entry[Any]
    params: dict[str, Any]


def display_name(node: Mapping[str, Any], table: Mapping[str, Any] | None = None) -> str:
    """The name a method or dataset node runs under, read without importing anything;
    ``table``: the per-method overrides (``method_params``) that apply to it."""
    if node.get("name") != DOTTED:
        return str(node.get("name"))
    node = {**node, **((table or {}).get(DOTTED) or {})}
    return str(node.get("label") or node.get("fn") or DOTTED)


def select(registry: Registry[Any], node: Any, drop: tuple[str, ...] = ("name",)) -> Selected:
    """The entry that config ``node`` names, and its parameters (``node`` less ``drop``;
    for a dotted path also less its own keys)."""
    d = to_dict(node)
    name = str(d.get("name"))
    if name != DOTTED:
        return Selected(name, registry.get(name), {k: v for k, v in d.items() if k not in drop})
    kind = registry.kind
    path = d.get("fn")
    if not path:
        raise ConfigError(f"{kind}={DOTTED} needs the function: set {kind}.fn=module:function")
    obj = load_object(path, kind)
    if not callable(obj):
        raise ConfigError(f"{kind} {path!r} is a {type(obj).__name__}, not a function")
    what = f"{kind} {path!r}"
    known = registry.entry_of(obj)  # registered by its module: its metadata holds
    fn, info = (known.fn, known.info) if known else (checked(obj, what), _info(registry, obj, d))
    entry = Entry(path, fn, info, path, probe=True)  # identified by its path
    label = d.get("label") or (obj.__name__ if kind == "metric" else object_path(obj))
    params = {k: v for k, v in d.items() if k not in drop + OWN_KEYS[kind]}
    _check_params(entry, params, kind == "dataset", what)
    return Selected(str(label), entry, params)


def _info(registry: Registry[Any], fn: Any, node: dict[str, Any]) -> Any:
    """Metadata of an unregistered function named by a dotted path."""
    if registry.kind == "metric":
        if node.get("higher_is_better") is None:
            raise ConfigError(f"metric {node.get('fn')!r} is not registered: set "
                              "higher_is_better=true|false in its node (metric.callable)")
        return MetricInfo(higher_is_better=bool(node["higher_is_better"]),
                          needs=frozenset(node.get("needs") or ()))
    assert registry.plain_info is not None, f"{registry.kind}s take plain functions"
    return registry.plain_info(fn)


def identity(selected: Mapping[str, Selected], model_entry: Entry[Any],
             model_node: Any) -> tuple[dict[str, Any], set[str]]:
    """Identity of every piece of outside code in a job, by role (``method``,
    ``metric.<name>``, ``dataset``, ``model``, ``model.fn``): empty for built-ins only, so
    their keys stay as they were; and the roles to try on one sample before a run opens
    (plugins and dotted paths; not entries registered in this process)."""
    entries = {role: s.entry for role, s in selected.items()}
    entries["model"] = model_entry
    probe = {role for role, e in entries.items() if e.probe}
    code = _outside_code(selected, model_entry, model_node)
    if "model.fn" in code:
        probe.add("model.fn")
    return {role: source_identity(obj) for role, obj in code.items()}, probe


def code_files(selected: Mapping[str, Selected], model_entry: Entry[Any],
               model_node: Any) -> list[str] | None:
    """The source files of the outside code that ``identity`` identifies (None when a
    piece of it has no source file: code typed into a REPL)."""
    from faithbench.plugins import source_file

    files = [source_file(obj) for obj in _outside_code(selected, model_entry, model_node).values()]
    return None if None in files else files  # type: ignore[return-value]


def _outside_code(selected: Mapping[str, Selected], model_entry: Entry[Any],
                  model_node: Any) -> dict[str, Any]:
    """The outside functions of a job by role: plugin and dotted-path entries, and a
    model factory named by its path (``model.fn``)."""
    entries = {role: s.entry for role, s in selected.items()}
    entries["model"] = model_entry
    out = {role: e.fn for role, e in entries.items() if e.outside}
    path = to_dict(model_node).get("fn")
    if isinstance(path, str):  # a model built by a factory named by its path
        out["model.fn"] = load_object(path, "model")
    return out


def _check_params(entry: Entry[Any], params: Mapping[str, Any], builder: bool, what: str) -> None:
    """No required parameter of ``entry.fn`` is missing from ``params`` (the runner's
    context aside); for a dataset builder ``fn(preprocess, **params)`` also no unknown one
    (methods and metrics are checked by ``fill_context``)."""
    sig = inspect.signature(entry.fn).parameters
    names = list(sig)[1:] if builder else list(config_params(entry.fn))
    if builder and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        bad = [k for k in params if k not in names]
        if bad:
            raise ConfigError(f"{what} has no parameter {bad[0]!r}. Valid parameters: "
                              f"{', '.join(names)}.")
    injected = getattr(entry.info, "injected", frozenset())
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [n for n in names if sig[n].kind in plain and sig[n].default is sig[n].empty
               and n not in params and n not in injected]
    if missing:
        raise ConfigError(f"{what}: missing required parameter {missing[0]!r} "
                          f"(set it in the node, e.g. {missing[0]}=...)")
