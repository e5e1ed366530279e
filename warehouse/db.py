"""Opening a unit's store: one DuckDB file per unit, migrated to the latest schema on every open.

The analytics hub's warehouse and the linkage unit's store are separate files with separate
schemas (`migrations/common` for both, then `migrations/hub` or `migrations/linkage`): the
linkage unit's store has no events or attributes tables, the hub's no identifier encodings.
`connect(settings)` opens the store of `settings.unit` only.  DuckDB allows one writing process;
stages open, work and close.  Readers (the dashboard) use the published snapshots instead
(`warehouse.publish`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from joinedup import faults
from joinedup.config import Settings


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, checkpoint: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`with transaction(con):` -- one DuckDB transaction: COMMIT when the block ends, ROLLBACK
    and re-raise on an error.  `checkpoint` names the kill point just before COMMIT
    (`joinedup.faults`), where an interrupted write is most likely to leave half a state."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        if checkpoint:
            faults.checkpoint(checkpoint)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _migrations(unit: str) -> list[tuple[int, str, str]]:
    root = resources.files("warehouse").joinpath("migrations")
    files = sorted(
        (
            p
            for folder in ("common", unit)
            for p in root.joinpath(folder).iterdir()
            if p.name.endswith(".sql")
        ),
        key=lambda p: p.name,
    )
    return [(int(p.name.split("_", 1)[0]), p.name, p.read_text(encoding="utf-8")) for p in files]


def migrate(con: duckdb.DuckDBPyConnection, unit: str = "hub") -> list[str]:
    """Apply every migration of the unit's store not yet applied, each in its own transaction.
    Returns the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS main.schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT now())"
    )
    done = {r[0] for r in con.execute("SELECT version FROM main.schema_migrations").fetchall()}
    applied = []
    for version, name, sql in _migrations(unit):
        if version in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute(
                "INSERT INTO main.schema_migrations (version, name) VALUES (?, ?)", [version, name]
            )
        applied.append(name)
    return applied


def open_warehouse(
    path: Path, read_only: bool = False, unit: str = "hub"
) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"threads": str(max(1, os.cpu_count() or 1))}
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    if not read_only:
        migrate(con, unit)
    return con


@contextmanager
def connect(settings: Settings, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """`with connect(settings) as con:` -- the migrated store of `settings.unit`, closed afterwards."""
    con = open_warehouse(settings.warehouse_path, read_only=read_only, unit=settings.unit)
    try:
        yield con
    finally:
        con.close()
