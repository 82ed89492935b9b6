"""A cached description of the registries, for the commands that only describe them.

``faithbench list`` and ``faithbench --help`` print what the registries hold: every
entry's name, origin and flags, and the config nodes generated from the signatures.
Building that imports every method, metric, model and dataset module, torch and all
installed plugins (about 4 s on two CPU cores); reading it back from this index takes
milliseconds. Runs never read the index: they compose from the live registries.

The index is valid for one fingerprint of everything that can change what it holds:
the size and modification time of every source and config file of faithbench, the
entry points of the ``faithbench.*`` groups with the distribution and version that
declares each, the size and modification time of the files of each plugin's top-level
module or package, the names of the distributions' metadata folders in each folder on
``sys.path`` (installing, upgrading or removing one changes them) and the interpreter. When any
of them changes the index is rebuilt by the next command that reads it. It lives in
``$FAITHBENCH_CACHE_DIR`` (else ``$XDG_CACHE_HOME/faithbench``, else
``~/.cache/faithbench``); ``FAITHBENCH_NO_INDEX=1`` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The packages whose files define the registries and the config nodes.
PACKAGES = ("faithbench", "faithbench.methods", "faithbench.metrics", "faithbench.datasets",
            "faithbench.conf")
GROUPS = ("methods", "metrics", "models", "datasets", "visualizations")
VERSION = 2  # bump when the index's layout changes


def cache_dir() -> Path:
    if os.environ.get("FAITHBENCH_CACHE_DIR"):
        return Path(os.environ["FAITHBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faithbench"


def _stat_tree(folder: Path, suffixes: tuple[str, ...] = (".py", ".yaml")) -> list[Any]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for f in sorted(files):
            if f.endswith(suffixes):
                st = os.stat(os.path.join(root, f))
                out.append([os.path.relpath(os.path.join(root, f), folder), st.st_mtime_ns,
                            st.st_size])
    return out


def _module_files(value: str) -> list[Any]:
    """Sizes and times of the files of the top-level module or package that entry point
    ``value`` (``module:attr``) names, found without importing it."""
    top = value.split(":")[0].split(".")[0].strip()
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return [top, None]
    if spec is None:
        return [top, None]
    if spec.submodule_search_locations:
        return [top, [_stat_tree(Path(p), (".py",)) for p in spec.submodule_search_locations]]
    if spec.origin and os.path.isfile(spec.origin):
        st = os.stat(spec.origin)
        return [top, spec.origin, st.st_mtime_ns, st.st_size]
    return [top, spec.origin]


def _installed() -> list[Any]:
    """The distributions on ``sys.path``: the names of the metadata folders and path
    files in each of its folders (installing, upgrading or removing one changes them;
    other files there, the working directory's outputs, do not)."""
    out = []
    for p in sys.path:
        try:
            names = sorted(n for n in os.listdir(p or ".") if n.endswith(_INSTALLED))
        except OSError:
            names = None
        out.append([p, names])
    return out


_INSTALLED = (".dist-info", ".egg-info", ".egg-link", ".pth")


def fingerprint() -> str:
    """A digest of everything the index depends on (see the module's docstring)."""
    return hashlib.sha256(json.dumps(_parts(), default=str).encode()).hexdigest()[:24]


def _parts() -> list[Any]:
    parts: list[Any] = [VERSION, sys.version, sys.executable, _installed()]
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            parts.append([name, loc, _stat_tree(Path(loc))])
    for group in GROUPS:
        for ep in sorted(importlib.metadata.entry_points(group=f"faithbench.{group}"),
                         key=lambda e: (e.name, e.value)):
            dist = ep.dist
            parts.append([group, ep.name, ep.value,
                          None if dist is None else [dist.name, dist.version],
                          _module_files(ep.value)])
    return parts


def _file() -> Path:
    where = hashlib.sha256(json.dumps([sys.prefix, sys.path]).encode()).hexdigest()[:12]
    return cache_dir() / f"registry-index-{where}.json"


def read(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The index: read back when its fingerprint matches, else ``build()`` (which imports
    the registries) and written for the next command. Any trouble with the cache file
    (unwritable, corrupt) only costs the rebuild."""
    if os.environ.get("FAITHBENCH_NO_INDEX"):
        return build()
    fp, path = fingerprint(), _file()
    try:
        held = json.loads(path.read_text())
        if held.get("fingerprint") == fp:
            return held["index"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    index = build()
    if fingerprint() != fp:  # files changed while building: do not keep a mixed index
        return index
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fp, "index": index}))
        os.replace(tmp, path)
    except OSError:
        pass
    return index


def text(key: list[str], build: Callable[[], str]) -> str:
    """A text that only the indexed files and ``key`` decide (``faithbench --help``'s
    page for these arguments): read back when the fingerprint matches, else ``build()``
    and kept for the next call. ``FAITHBENCH_NO_INDEX=1`` always builds."""
    if os.environ.get("FAITHBENCH_NO_INDEX"):
        return build()
    fp = fingerprint()
    digest = hashlib.sha256(json.dumps([fp, sys.prefix, sys.path, key]).encode()).hexdigest()[:24]
    path = cache_dir() / f"text-{digest}.txt"
    try:
        return path.read_text()
    except OSError:
        pass
    out = build()
    if out and fingerprint() == fp:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(out)
            os.replace(tmp, path)
        except OSError:
            pass
    return out

