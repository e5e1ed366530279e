"""Building, verifying and swapping in the three read-model snapshots, all or nothing.

Owns `snapshot_paths`, `publish` and `PublishCheckFailed`.  With the hub open (one writer):

1. each audience's snapshot is built in a temp file beside its target (attached as
   `pub_<audience>`): its documented tables (`<audience>.TABLES`) created empty, filled by the
   audience's `build`, then a `manifest` table (one row per table: row count, publish id,
   published_at, schema version);
2. every snapshot is verified: manifest counts equal the tables' counts, no text cell holds a raw
   token or Bloom filter value (`checks.raw_value_hits`), and its committed GX suites pass
   (`checks.targets`, run with `expectations.downstream.check`);
3. only when all three pass are the outcomes recorded in `audit.validations` and the files
   swapped in with `os.replace`, one after the other.  Any failure before that removes the temp
   files and keeps every old snapshot.  The three files share a `publish_id` in their manifests,
   so a reader can tell when it holds files from two publishes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import duckdb

from joinedup import faults
from joinedup.config import Settings
from warehouse.db import connect, transaction
from warehouse.read_models import AUDIENCES, SCHEMA_VERSION, analysts, checks, engineers, planners

MODULES: dict[str, ModuleType] = {
    "analysts": analysts,
    "planners": planners,
    "engineers": engineers,
}
MANIFEST: dict[str, str] = {
    "table_name": "VARCHAR",
    "n_rows": "BIGINT",
    "audience": "VARCHAR",
    "publish_id": "VARCHAR",
    "published_at": "TIMESTAMP",
    "schema_version": "VARCHAR",
}
#: the whole-warehouse copy earlier versions published (it held raw, quarantine and audit data)
LEGACY_FILE = "published.duckdb"


class PublishCheckFailed(RuntimeError):
    """A snapshot failed verification; no snapshot was replaced."""


def snapshot_paths(settings: Settings) -> dict[str, Path]:
    """audience -> its snapshot file, beside `settings.published_path` (the analysts' one)."""
    folder = settings.published_path.parent
    return {a: folder / f"published_{a}.duckdb" for a in AUDIENCES}


def _builder(audience: str) -> Callable[..., None]:
    # looked up at call time, so a test can replace one audience's build
    return MODULES[audience].build


def _create(con: duckdb.DuckDBPyConnection, cat: str, tables: dict[str, dict[str, str]]) -> None:
    for table, columns in tables.items():
        cols = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        con.execute(f"CREATE TABLE {cat}.main.{table} ({cols})")


def _manifest(
    con: duckdb.DuckDBPyConnection, cat: str, audience: str, publish_id: str, at: datetime
) -> dict[str, int]:
    tables = MODULES[audience].TABLES
    counts = {
        t: int(con.execute(f"SELECT count(*) FROM {cat}.main.{t}").fetchone()[0]) for t in tables
    }
    _create(con, cat, {"manifest": MANIFEST})
    con.executemany(
        f"INSERT INTO {cat}.main.manifest VALUES (?, ?, ?, ?, ?, ?)",
        [(t, n, audience, publish_id, at, SCHEMA_VERSION) for t, n in counts.items()],
    )
    return counts


def _attach_previous(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The snapshot being replaced, read-only, as `prev_analysts` (None if absent/unreadable)."""
    if not path.exists():
        return None
    try:
        con.execute(f"ATTACH '{path}' AS prev_analysts (READ_ONLY)")
    except duckdb.Error:
        return None
    return "prev_analysts"


def _detach_all(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    for name in names:
        try:
            con.execute(f"DETACH {name}")
        except duckdb.Error:
            pass


def publish(settings: Settings) -> dict:
    """Build, verify and swap in the three snapshots.  Returns per-audience row counts, the
    suites' public outcomes and the paths.  Raises (keeping every old snapshot) on any failure."""
    from expectations.downstream import check, public, record

    targets = snapshot_paths(settings)
    tmps = {a: p.with_name(f".{p.name}.{os.getpid()}.tmp") for a, p in targets.items()}
    publish_id, at = uuid4().hex[:12], datetime.now()
    counts: dict[str, dict[str, int]] = {}
    outcomes: list[dict] = []
    swapped = False
    try:
        with connect(settings) as con:
            # holding the hub (one writer): temp files left by a killed publish can go
            for path in targets.values():
                for leftover in path.parent.glob(f".{path.name}.*.tmp*"):
                    leftover.unlink(missing_ok=True)
            con.execute("CHECKPOINT")
            attached: list[str] = []
            try:
                previous = _attach_previous(con, targets["analysts"])
                if previous:
                    attached.append(previous)
                for audience, tmp in tmps.items():
                    cat = f"pub_{audience}"
                    con.execute(f"ATTACH '{tmp}' AS {cat}")
                    attached.append(cat)
                    _create(con, cat, MODULES[audience].TABLES)
                    _builder(audience)(con, settings, cat, previous)
                    counts[audience] = _manifest(con, cat, audience, publish_id, at)
                for audience in AUDIENCES:
                    cat = f"pub_{audience}"
                    hits = checks.raw_value_hits(con, cat)
                    if hits:
                        raise PublishCheckFailed(
                            f"publish: the {audience}' snapshot holds raw values ({'; '.join(hits)}); "
                            "no snapshot was replaced"
                        )
                    for target in checks.targets(audience, cat):
                        outcomes.append(check(con, settings, target.table, target=target))
            finally:
                _detach_all(con, attached)
            failed = [o for o in outcomes if not o["success"]]
            with transaction(con):
                for outcome in outcomes:
                    record(con, settings, outcome)
            if failed:
                raise PublishCheckFailed(
                    "publish: "
                    + "; ".join(f"{o['table']}: {', '.join(o['critical'])}" for o in failed)
                    + "; no snapshot was replaced"
                )
        faults.checkpoint("publish.before_swap")
        for audience, tmp in tmps.items():
            os.replace(tmp, targets[audience])
        swapped = True
    finally:
        if not swapped:
            for tmp in tmps.values():
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                    leftover.unlink(missing_ok=True)
    legacy = settings.published_path.parent / LEGACY_FILE
    if legacy not in targets.values():
        legacy.unlink(missing_ok=True)
    return {
        "publish_id": publish_id,
        "published_at": at.isoformat(timespec="seconds"),
        "paths": {a: str(p) for a, p in targets.items()},
        "row_counts": counts,
        "checks": {o["table"]: public(o) for o in outcomes},
    }
