"""Publish: an atomic, complete snapshot of the warehouse for readers.

DuckDB allows one writing process, so the dashboard never opens the working warehouse.  Publish
copies every table into a new file next to the snapshot, checks that each table's row count
matches the source, then swaps it in with `os.replace` (atomic on one filesystem): a reader sees
the old snapshot or the new one, never a partial one.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import duckdb

from joinedup import faults
from joinedup.config import Settings
from warehouse.db import connect


def _tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1, 2",
        [catalog],
    ).fetchall()


def run(settings: Settings) -> dict:
    """Write and verify a new snapshot, then swap it in. Figures: tables, rows, path."""
    started = time.perf_counter()
    target = settings.published_path
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    with connect(settings) as con:
        con.execute("CHECKPOINT")
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{tmp}' AS snapshot")
        try:
            con.execute(f"COPY FROM DATABASE {catalog} TO snapshot")
            counts: dict[str, int] = {}
            for schema, table in _tables(con, catalog):
                src = con.execute(
                    f'SELECT count(*) FROM {catalog}."{schema}"."{table}"'
                ).fetchone()[0]
                dst = con.execute(f'SELECT count(*) FROM snapshot."{schema}"."{table}"').fetchone()[
                    0
                ]
                if src != dst:
                    raise RuntimeError(
                        f"publish: {schema}.{table} has {src} rows but the snapshot has {dst}; "
                        "the old snapshot was kept"
                    )
                counts[f"{schema}.{table}"] = src
            con.execute(
                "CREATE TABLE snapshot.main.published_manifest AS SELECT ?::TIMESTAMP AS published_at, "
                "?::JSON AS row_counts",
                [datetime.now(), json.dumps(counts)],
            )
        finally:
            con.execute("DETACH snapshot")
    faults.checkpoint("publish.before_swap")
    os.replace(tmp, target)
    manifest = {
        "published_at": datetime.now().isoformat(timespec="seconds"),
        "path": str(target),
        "tables": len(counts),
        "row_counts": counts,
    }
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    (settings.outputs_dir / "published.json").write_text(json.dumps(manifest, indent=2))
    from expectations.downstream import build_docs

    return {
        "path": str(target),
        "tables": len(counts),
        "rows": sum(counts.values()),
        "data_docs": build_docs(settings),
        "seconds": round(time.perf_counter() - started, 3),
    }
