"""Name -> entry registries, one per kind (model, method, metric, dataset).

An entry is a function registered under its snake_case name with metadata that generic
code reads (``needs_layer``, ``higher_is_better``, ...) instead of branching on names.
Methods and metrics also declare the context the runner injects (``context=("layer",)``,
see ``faithbench.types.Context``); their flags are derived from it.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faithbench.errors import ConfigError, unknown_choice
from faithbench.params import checked
from faithbench.types import Context

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")


@dataclass(frozen=True)
class Entry(Generic[M]):
    name: str
    fn: Callable[..., Any]
    info: M


@dataclass
class Registry(Generic[M]):
    """A registry of ``kind`` entries; ``package`` is imported on first lookup so that
    every module in it has registered itself (files starting with ``_`` are helpers)."""

    kind: str
    package: str
    info_type: type[M]
    _entries: dict[str, Entry[M]] = field(default_factory=dict)
    _loaded: bool = False

    def register(self, name: str | None = None, **info: Any) -> Callable[[F], F]:
        """Register ``fn`` under ``name`` (default: its own name) with ``info`` (the fields
        of ``info_type``). The function returned (and registered) runs ``fn``'s declared
        parameter checks on every call (see ``faithbench.params``)."""
        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries and inspect.unwrap(self._entries[key].fn) is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            what = f"{self.kind} {key!r}"
            meta = self.info_type(**_fold_flags(dict(info), what))
            _check_context(fn, getattr(meta, "injected", frozenset()), what)
            wrapped = checked(fn, what)
            self._entries[key] = Entry(key, wrapped, meta)
            return wrapped  # type: ignore[return-value]

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> Entry[M]:
        self._load()
        if name not in self._entries:
            raise unknown_choice(self.kind, name, self._entries)
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


# Flags of the older register(...) keywords that restated a context parameter.
_CONTEXT_FLAGS = {"needs_layer": "layer", "stochastic": "seed", "needs_explain": "explain"}


def _fold_flags(info: dict[str, Any], what: str) -> dict[str, Any]:
    """Accept the older capability keywords from outside code: the context flags become
    ``context`` names, ``model_free``/``needs_grad`` a ``cost`` class (free / forward)."""
    old = [k for k in (*_CONTEXT_FLAGS, "needs_grad", "model_free") if k in info]
    if not old:
        return info
    warnings.warn(f"{what}: register({', '.join(old)}=...) is deprecated; declare "
                  "context=(...) and cost=... instead", DeprecationWarning, stacklevel=3)
    context = set(info.pop("context", ()))
    context |= {c for flag, c in _CONTEXT_FLAGS.items() if info.pop(flag, False)}
    free, grad = info.pop("model_free", None), info.pop("needs_grad", None)
    if free is not None or grad is not None:  # methods only: both follow from the cost
        cost = info.setdefault("cost", "free" if free else "forward" if grad is False else "backward")
        if (free is not None and (cost == "free") != free) or \
                (grad is not None and (cost == "backward") != grad):
            raise ValueError(f"{what}: cost={cost!r} contradicts model_free={free}, needs_grad={grad}")
    info["context"] = frozenset(context)
    return info


def _check_context(fn: Callable[..., Any], names: frozenset[str], what: str) -> None:
    """Each declared context name is a known one and a parameter of ``fn``."""
    valid = typing.get_args(Context)
    params = inspect.signature(fn).parameters
    for c in sorted(names):
        if c not in valid:
            raise ConfigError(f"{what}: {unknown_choice('context', c, valid)}")
        if c not in params:
            raise ValueError(f"{what} declares context {c!r} but has no parameter {c!r}")
