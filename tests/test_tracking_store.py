"""A new SQLite store starts as a copy of a cached blank store (MLflow's schema, no
experiment): it must be the store MLflow itself makes for a new file."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from faithbench import tracking

TIMES = {"creation_time", "last_update_time"}


def _lines(sql: str | None) -> list[str]:
    """A schema statement's lines in sorted order: MLflow's migrations (SQLAlchemy's
    batch mode) write a table's constraints in an order that changes from process to
    process."""
    return sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())


def _dump(db: Path) -> dict:
    """Every schema entry and every table's rows (times left out)."""
    con = sqlite3.connect(db)
    try:
        schema = sorted(((t, n, tbl, _lines(sql)) for t, n, tbl, sql in
                         con.execute("select type, name, tbl_name, sql from sqlite_master")), key=str)
        rows = {}
        for (table,) in con.execute("select name from sqlite_master where type = 'table'"):
            cur = con.execute(f'select * from "{table}"')
            cols = [c[0] for c in cur.description]
            rows[table] = sorted(
                (tuple(str(v) for c, v in zip(cols, r) if c not in TIMES)
                 for r in cur.fetchall()), key=str)
        return {"schema": schema, "rows": rows}
    finally:
        con.close()


def test_a_seeded_store_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's artifact root: ./mlruns
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "own").mkdir()
    (tmp_path / "seeded").mkdir()
    own, seeded = tmp_path / "own" / "mlflow.db", tmp_path / "seeded" / "mlflow.db"
    MlflowClient(f"sqlite:///{own}").create_experiment("faithbench")
    tracking.Tracker(f"sqlite:///{seeded}", "faithbench").experiment_id  # creates it
    blank = next((tmp_path / "cache").glob("mlflow-blank-*.db"))
    assert "experiments" in _dump(blank)["rows"] and _dump(blank)["rows"]["experiments"] == []
    a, b = _dump(own), _dump(seeded)
    assert a["schema"] == b["schema"]
    assert a["rows"] == b["rows"]
    assert [r[:2] for r in b["rows"]["experiments"]] == [("0", "Default"), ("1", "faithbench")]


def test_the_blank_store_is_built_once_and_copied(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first, revision = tracking.blank_sqlite()
    stamp = first.stat().st_mtime_ns
    from mlflow.store.db import utils

    def no_migrations(engine):
        raise AssertionError("MLflow migrated a new store: the blank one was not copied")

    monkeypatch.setattr(utils, "_initialize_tables", no_migrations)
    for name in ("a", "b"):
        tracking.seed_sqlite(tmp_path / name / "mlflow.db")
        assert (tmp_path / name / "mlflow.db").read_bytes() == first.read_bytes()
    assert tracking.blank_sqlite() == (first, revision) and first.stat().st_mtime_ns == stamp
    t = tracking.Tracker(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}", "faithbench")
    t.finish(t.start("key", "name", {}))
    assert t.finished_runs()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_store_that_appeared_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"someone else's")
    tracking.seed_sqlite(db)
    assert db.read_bytes() == b"someone else's" and not list(tmp_path.glob("*.tmp"))


def test_a_damaged_blank_store_is_not_copied_and_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    blank, revision = tracking.blank_sqlite()
    blank.write_bytes(b"not a database")
    tracking.seed_sqlite(tmp_path / "x" / "mlflow.db")
    assert not (tmp_path / "x" / "mlflow.db").exists() and not blank.exists()
    t = tracking.Tracker(f"sqlite:///{tmp_path / 'x' / 'mlflow.db'}", "faithbench")  # MLflow builds it
    t.finish(t.start("key", "name", {}))
    again, _ = tracking.blank_sqlite()
    assert tracking._revision(again) == revision


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o644)])
def test_a_seeded_store_has_the_permissions_sqlite_gives_a_new_file(tmp_path, monkeypatch, umask, mode):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    tracking.blank_sqlite()
    old = os.umask(umask)
    try:
        tracking.seed_sqlite(tmp_path / "mlflow.db")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "mlflow.db").stat().st_mode) == mode


def test_without_a_cache_mlflow_builds_the_schema_itself(tmp_path, monkeypatch):
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "not_a_folder"))
    t = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "faithbench")
    run_id = t.start("key", "name", {})
    t.finish(run_id)
    assert t.finished_runs()
    assert not list(tmp_path.glob("*.tmp"))
