"""faithbench: a benchmark harness for the faithfulness of attribution maps.

Importing the top-level package is cheap; the runner, tracking and reports are imported
on demand (``faithbench.run``, ``faithbench.report``), and so are the Python API's
``faithbench.evaluate``, ``faithbench.leaderboard`` and ``faithbench.from_module``.
"""

from typing import Any

__version__ = "0.1.0"

_API = {"evaluate": "faithbench.api", "leaderboard": "faithbench.api_board",
        "from_module": "faithbench.models.module", "find_cam_layer": "faithbench.models.module"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'faithbench' has no attribute {name!r}")
