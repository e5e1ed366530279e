"""Reading the published read models (read-only DuckDB files), never the warehouse.

Owns opening a snapshot read-only, re-opening it when publish swaps a new file in (checked by
inode on every query), the schema-version check against each snapshot's `manifest`, and
`query`/`one`, which return rows as dicts.  Queries are parameterised; table and column names come
only from this package's code.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from django.conf import settings

#: the read models' schema major version this app understands (docs/read-models.md)
SCHEMA_MAJOR = "1"


class SnapshotUnavailable(RuntimeError):
    """A read model cannot be read; pages answer 503 with the reason
    (`middleware.SnapshotUnavailableMiddleware`)."""


class SnapshotMissing(SnapshotUnavailable):
    """The pipeline has not published this audience's read model yet."""


class SnapshotIncompatible(SnapshotUnavailable):
    """The read model's schema version is one this app does not understand."""


@dataclass(frozen=True)
class _Open:
    ino: int
    mtime_ns: int
    con: duckdb.DuckDBPyConnection
    manifest: dict[str, Any]


_lock = threading.Lock()
_open: dict[str, _Open] = {}
_local = threading.local()


def _path(audience: str) -> Path:
    return Path(settings.READ_MODELS[audience])


def _connection(audience: str) -> tuple[duckdb.DuckDBPyConnection, dict[str, Any]]:
    path = _path(audience)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SnapshotMissing(
            f"the {audience}' read model is not published yet ({path.name}): run the pipeline"
        ) from None
    cur = _open.get(audience)
    if cur is None or cur.ino != st.st_ino or cur.mtime_ns != st.st_mtime_ns:
        with _lock:
            cur = _open.get(audience)
            if cur is None or cur.ino != st.st_ino or cur.mtime_ns != st.st_mtime_ns:
                # small point queries from many request threads: one DuckDB thread each
                con = duckdb.connect(str(path), read_only=True, config={"threads": 1})
                rows = con.execute(
                    "SELECT table_name, n_rows, publish_id, CAST(published_at AS VARCHAR), "
                    "schema_version FROM manifest"
                ).fetchall()
                if not rows or any(str(r[4]).split(".")[0] != SCHEMA_MAJOR for r in rows):
                    con.close()
                    raise SnapshotIncompatible(
                        f"{path.name}: schema version {rows[0][4] if rows else 'missing'} "
                        f"(this app reads {SCHEMA_MAJOR}.x)"
                    )
                manifest = {
                    "publish_id": rows[0][2],
                    "published_at": rows[0][3],
                    "schema_version": rows[0][4],
                    "tables": {r[0]: r[1] for r in rows},
                }
                old = _open.get(audience)
                _open[audience] = cur = _Open(st.st_ino, st.st_mtime_ns, con, manifest)
                # the old connection is left to the garbage collector: other threads may hold
                # cursors on it for the rest of their query
                del old
    cursors = getattr(_local, "cursors", None)
    if cursors is None:
        cursors = _local.cursors = {}
    key = (audience, cur.ino, cur.mtime_ns)
    cursor = cursors.get(key)
    if cursor is None:
        for k in [k for k in cursors if k[0] == audience]:
            del cursors[k]
        cursor = cursors[key] = cur.con.cursor()
    return cursor, cur.manifest


def manifest(audience: str) -> dict[str, Any]:
    """The snapshot's publish id, time, schema version and table row counts."""
    return _connection(audience)[1]


def has_table(audience: str, table: str) -> bool:
    return table in manifest(audience)["tables"]


def query(audience: str, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]:
    """Rows of a parameterised query on one audience's snapshot, as dicts."""
    cursor, _ = _connection(audience)
    result = cursor.execute(sql, list(params))
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def one(audience: str, sql: str, params: list | tuple = ()) -> dict[str, Any] | None:
    rows = query(audience, sql, params)
    return rows[0] if rows else None


def scalar(audience: str, sql: str, params: list | tuple = ()) -> Any:
    cursor, _ = _connection(audience)
    row = cursor.execute(sql, list(params)).fetchone()
    return row[0] if row else None


_frames: dict[tuple, Any] = {}


def frame(audience: str, key: str, sql: str):
    """A query's result as a pandas DataFrame, computed once per published snapshot and process
    (the list's filter-and-rank index: ~100,000 short rows), dropped when publish swaps a file."""
    _connection(audience)
    cur = _open[audience]
    k = (audience, cur.ino, cur.mtime_ns, key)
    df = _frames.get(k)
    if df is None:
        with _lock:
            df = _frames.get(k)
            if df is None:
                df = cur.con.cursor().execute(sql).df()
                for old in [o for o in _frames if o[0] == audience and o[3] == key]:
                    del _frames[old]
                _frames[k] = df
    return df


def reset() -> None:
    """Forget every open snapshot (tests, and after settings change)."""
    with _lock:
        _open.clear()
        _frames.clear()
    _local.__dict__.clear()
