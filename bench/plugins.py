"""Outside code: objects named by ``module:attribute`` paths, and their identity.

Methods, metrics, models and datasets may come from outside the package (an installed
plugin, or a module on the working directory / ``PYTHONPATH``). Their numbers are only
reproducible if the run key and the heatmap cache key change whenever their code does,
so :func:`source_identity` names the distribution and version that provides an object
and hashes the source file that defines it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import inspect
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from faithbench.errors import ConfigError


def load_object(path: str, what: str = "object") -> Any:
    """The object at ``path``, written ``package.module:attribute`` (the attribute may be
    dotted: ``module:Class.method``). Modules are imported from the working directory
    first, then ``sys.path``. Errors name the path and what went wrong.

    Example:
        >>> load_object("os.path:join").__name__
        'join'
        >>> load_object("os.path", "method")
        Traceback (most recent call last):
        ...
        faithbench.errors.ConfigError: method path 'os.path' must look like 'package.module:function'
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"{what} path {path!r} must look like 'package.module:function'")
    module_name, attr = path.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = _fresh_module(module_name)
    except Exception as e:  # any failure inside the user's module, named with the path
        raise ConfigError(f"{what} {path!r}: cannot import module {module_name!r}: "
                          f"{type(e).__name__}: {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")])
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"{what} {path!r}: {getattr(obj, '__name__', obj)!r} has no "
                              f"attribute {part!r}.{hint}")
        obj = getattr(obj, part)
    return obj


# Source hash of each module that load_object imported, as it was when imported.
_IMPORTED: dict[str, str | None] = {}


def _fresh_module(name: str) -> Any:
    """Module ``name``, imported again when its source file changed since this process
    imported it (a notebook, or a launcher that runs a sweep's jobs in one process), so
    the code that runs is always the code whose hash goes into the keys. A module cached
    from another file than the one the search path finds now (the working directory
    changed) is imported afresh from the one found now."""
    _forget_if_moved(name.split(".")[0])
    module = importlib.import_module(name)
    sha = source_sha(module)
    if name in _IMPORTED and _IMPORTED[name] != sha:
        module = importlib.reload(module)
    _IMPORTED[name] = sha
    return module


def _forget_if_moved(top: str) -> None:
    cached = sys.modules.get(top)
    old = getattr(cached, "__file__", None)
    if cached is None or old is None:
        return
    spec = importlib.machinery.PathFinder.find_spec(top, sys.path)
    if spec is not None and spec.origin and Path(spec.origin).resolve() != Path(old).resolve():
        for n in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[n]
            _IMPORTED.pop(n, None)


def object_path(obj: Any) -> str:
    """``module:qualname`` of a function or class (what :func:`load_object` reads back)."""
    obj = inspect.unwrap(obj)
    return f"{obj.__module__}:{obj.__qualname__}"


@lru_cache(maxsize=None)
def _module_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def distribution_of(module_name: str) -> tuple[str, str] | None:
    """``(distribution, version)`` that installs the top-level package of
    ``module_name``, or None for code that no installed distribution provides."""
    top = module_name.split(".")[0]
    for dist in _module_distributions().get(top, []):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def source_sha(obj: Any) -> str | None:
    """SHA-256 (16 hex digits) of the source file that defines ``obj``, or None when it
    has none (a builtin, code typed into a REPL). Read each call: an edit shows at once."""
    file = source_file(obj)
    return None if file is None else hashlib.sha256(Path(file).read_bytes()).hexdigest()[:16]


def source_file(obj: Any) -> str | None:
    """The source file that defines ``obj``, or None when it has none."""
    try:
        file = inspect.getsourcefile(inspect.unwrap(obj))
    except TypeError:
        return None
    return file if file and Path(file).is_file() else None


def source_identity(obj: Any) -> dict[str, str | None]:
    """What identifies outside code in run and cache keys: its path, the distribution
    and version that provides it (None for a loose module), and its source file's hash.

    Example:
        >>> ident = source_identity(load_object("faithbench.plugins:load_object"))
        >>> sorted(ident), ident["path"]
        (['dist', 'path', 'source'], 'faithbench.plugins:load_object')
    """
    obj = inspect.unwrap(obj)
    module = getattr(obj, "__module__", None) or ""
    dist = distribution_of(module)
    return {"path": object_path(obj), "dist": f"{dist[0]}=={dist[1]}" if dist else None,
            "source": source_sha(obj)}
