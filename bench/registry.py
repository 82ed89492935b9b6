"""Name -> entry registries, one per kind (model, method, metric, dataset).

An entry is a function registered under its snake_case name with metadata that generic
code reads (``needs_layer``, ``higher_is_better``, ...) instead of branching on names.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faithbench.errors import unknown_choice
from faithbench.params import checked

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
        """Register ``fn`` under ``name`` (default: its own name). The function returned
        (and registered) runs ``fn``'s declared parameter checks on every call (see
        ``faithbench.params``)."""
        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries and inspect.unwrap(self._entries[key].fn) is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            wrapped = checked(fn, f"{self.kind} {key!r}")
            self._entries[key] = Entry(key, wrapped, self.info_type(**info))
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
