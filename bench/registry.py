"""Name -> entry registries, one per kind (model, method, metric, dataset).

An entry is a function registered under its snake_case name with metadata that generic
code reads (``needs_layer``, ``higher_is_better``, ...) instead of branching on names.
Methods and metrics also declare the context the runner injects (``context=("layer",)``,
see ``faithbench.types.Context``); their flags are derived from it.

Installed packages add entries through the entry-point group ``faithbench.<kind>s``
(``faithbench.methods``, ...): entry name = registry key, value = ``module:function``.
The function may register itself with the same ``register(...)`` (its metadata then
holds) or be plain (registered with ``plain_info``). A plugin that fails to load, or
whose name is taken, is an error only when it is selected (``faithbench list`` shows
it): a broken plugin never blocks runs of other entries.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
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
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Entry(Generic[M]):
    name: str
    fn: Callable[..., Any]
    info: M
    # "built-in" (also what is registered in this process), "<distribution> <version>"
    # (a plugin) or the module:function path that a dotted-path entry names
    origin: str = BUILT_IN
    probe: bool = False  # a plugin or a dotted path: tried on one sample before a run opens

    @property
    def outside(self) -> bool:
        """Code from outside faithbench: its identity goes into run and cache keys."""
        return self.origin != BUILT_IN


@dataclass
class Registry(Generic[M]):
    """A registry of ``kind`` entries; ``package`` is imported on first lookup so that
    every module in it has registered itself (files starting with ``_`` are helpers)."""

    kind: str
    package: str
    info_type: type[M]
    # metadata of a plugin function that does not register itself (None: it must)
    plain_info: Callable[[Callable[..., Any]], M] | None = None
    _entries: dict[str, Entry[M]] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)  # plugin name -> why it cannot load
    _origin: str = BUILT_IN  # who registers now (a plugin while its module is imported)
    _loaded: bool = False

    def register(self, name: str | None = None, **info: Any) -> Callable[[F], F]:
        """Register ``fn`` under ``name`` (default: its own name) with ``info`` (the fields
        of ``info_type``). The function returned (and registered) runs ``fn``'s declared
        parameter checks on every call (see ``faithbench.params``)."""
        def decorator(fn: F) -> F:
            key = name or fn.__name__
            origin = self._origin  # a plugin's while its module is imported
            old = self._entries.get(key)
            if old is not None and not _same_definition(inspect.unwrap(old.fn), fn):
                if origin == old.origin == BUILT_IN:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
                raise ConfigError(f"{self.kind} {key!r} is registered twice: by {old.origin} "
                                  f"and by {origin}")
            what = f"{self.kind} {key!r}"
            meta = self.info_type(**_fold_flags(dict(info), what))
            _check_context(fn, getattr(meta, "injected", frozenset()), what)
            wrapped = checked(fn, what)
            self._entries[key] = Entry(key, wrapped, meta, origin)
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
        for ep in importlib.metadata.entry_points(group=f"faithbench.{self.kind}s"):
            try:
                self._load_plugin(ep)
            except Exception as e:  # kept: an error when selected, never for other entries
                self._broken[ep.name] = (f"{self.kind} plugin {ep.name!r} = {ep.value!r} "
                                         f"({_provider(ep)}) cannot be used: "
                                         f"{type(e).__name__}: {e}")

    def _load_plugin(self, ep: importlib.metadata.EntryPoint) -> None:
        """Import entry point ``ep`` and file its function under ``ep.name``, with the
        metadata its module registered, or ``plain_info`` for a plain function."""
        provider = _provider(ep)
        if ep.name in self._entries:
            raise ConfigError(f"{self.kind} {ep.name!r} is registered twice: by "
                              f"{self._entries[ep.name].origin} and by {provider}")
        self._origin = provider
        try:
            obj = ep.load()
        finally:
            self._origin = BUILT_IN
        target = inspect.unwrap(obj)
        own = [k for k, e in self._entries.items()
               if inspect.unwrap(e.fn) is target and e.origin == provider]
        if own:  # registered by its module; filed under the entry point's name
            entry = self._entries.pop(own[0])
            self._entries[ep.name] = Entry(ep.name, entry.fn, entry.info, provider, probe=True)
            return
        if self.plain_info is None:
            raise ConfigError(f"{ep.value} is not registered: decorate it with "
                              f"faithbench.{self.kind}s.register(...) to declare its metadata")
        wrapped = checked(target, f"{self.kind} {ep.name!r}")
        self._entries[ep.name] = Entry(ep.name, wrapped, self.plain_info(target), provider,
                                       probe=True)

    def get(self, name: str) -> Entry[M]:
        self._load()
        if name in self._broken:
            raise ConfigError(self._broken[name])
        if name not in self._entries:
            raise unknown_choice(self.kind, name, self._entries)
        return self._entries[name]

    def entries(self) -> list[Entry[M]]:
        """Every registered entry, sorted by name, also one that a clashing plugin makes
        unselectable (its config node still composes; selecting it is the clash error)."""
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def entry_of(self, fn: Callable[..., Any]) -> Entry[M] | None:
        """The entry registered for function ``fn`` (wrapped or not), if any."""
        self._load()
        target = inspect.unwrap(fn)
        return next((e for e in self._entries.values() if inspect.unwrap(e.fn) is target), None)

    def broken(self) -> dict[str, str]:
        """Plugins that cannot be used, with the reason (for ``faithbench list``)."""
        self._load()
        return dict(self._broken)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted (but those a broken
        plugin claims: selecting them is an error)."""
        self._load()
        return sorted(n for n in self._entries
                      if fnmatch.fnmatchcase(n, pattern) and n not in self._broken)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries and name not in self._broken


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same function, or the same module-level definition run again (its module
    reloaded after an edit: ``faithbench.plugins.load_object``)."""
    top_level = "<" not in b.__qualname__  # not a lambda or a function local to another
    same_name = (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
    return a is b or (top_level and same_name)


def _provider(ep: importlib.metadata.EntryPoint) -> str:
    """``<distribution> <version>`` of the package that declares entry point ``ep``."""
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"


def context_of(fn: Callable[..., Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(required, optional) context of a plain function: its parameters named like a
    context value (``layer``, ``seed``, ...); optional where the parameter has a default."""
    valid = set(typing.get_args(Context))
    params = inspect.signature(fn).parameters
    names = [n for n in params if n in valid]
    return (frozenset(n for n in names if params[n].default is inspect.Parameter.empty),
            frozenset(n for n in names if params[n].default is not inspect.Parameter.empty))


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
