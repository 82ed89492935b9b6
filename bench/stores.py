"""Where runs are tracked, without importing MLflow (a sweep decides what to compose
before its workers fork, and MLflow takes a second to import)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SQLITE = "sqlite:///"


def resolve_uri(uri: str | None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else a SQLite file in the cwd."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"{SQLITE}{Path.cwd() / 'mlflow.db'}"
    if uri.startswith(SQLITE) and not uri.startswith("sqlite:////"):
        return f"{SQLITE}{Path(uri[len(SQLITE):]).resolve()}"
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI, None for any other store."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def connect_readonly(db: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite file ``db`` (any path; raises
    ``sqlite3.Error`` when it cannot be opened)."""
    return sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
