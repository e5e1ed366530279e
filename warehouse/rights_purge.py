"""Purging an opted-out record's rows from a unit's store (`warehouse.rights`; docs/privacy.md).

All functions run inside the caller's transaction and read the records to remove from the temp
table `KEYS` (agency, record_token, request_id).  `purge_layers` removes the raw, staging and
quarantine rows of the unit's file kinds and counts the raw rows per load in
`rights.purged_rows` (validation's conservation subtracts them); `purge` adds the unit's linked
layer (hub: mapping, records, events, children rebuilt, children with no record left leave
features and scores, every review-queue pair of a child that held such a record; linkage unit: records, pairs, review queue and decisions, either side) and
sweeps any other table keyed by (agency, record_token).  Counts only; no value is read out.
"""

from __future__ import annotations

import duckdb

from joinedup import contract

#: tables purged explicitly per unit; any other table with these key columns is swept too
_HUB_LINKED = ("linked.mapping", "linked.records", "linked.events")
_LINKAGE_LINKED = ("linked.records",)
_LINKAGE_PAIRED = ("linked.pairs", "linked.review_queue", "linked.review_decisions")
#: hub tables keyed by child id that a child with no record left must leave
_CHILD_TABLES = ("features.child_month", "scores.current")
KEYS = "_rights_keys"
_VICTIMS = "_rights_victims"


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_schema = ? AND table_name = ? "
            "AND table_type = 'BASE TABLE'",
            [schema, table],
        ).fetchone()[0]
    )


def count(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0


def _keyed_tables(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """Every base table of the store keyed by (agency, record_token), and every one keyed by
    both sides of a pair (agency_l, record_token_l, agency_r, record_token_r); not rights.*."""
    cols: dict[str, set[str]] = {}
    for schema, table, column in con.execute(
        "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
        "WHERE c.table_catalog = current_database() AND t.table_type = 'BASE TABLE' "
        "AND c.table_schema NOT IN ('rights', 'main', 'information_schema', 'pg_catalog')"
    ).fetchall():
        cols.setdefault(f"{schema}.{table}", set()).add(column)
    single = sorted(t for t, c in cols.items() if {"agency", "record_token"} <= c)
    paired = sorted(
        t
        for t, c in cols.items()
        if {"agency_l", "record_token_l", "agency_r", "record_token_r"} <= c
    )
    return single, paired


def purge_layers(
    con: duckdb.DuckDBPyConnection, unit: str, new_loads_only: bool = False
) -> dict[str, int]:
    """Remove the raw, staging and quarantine rows of the records in the temp table `KEYS`
    (agency, record_token, request_id) for the unit's file kinds, counting raw rows per load in
    rights.purged_rows.  `new_loads_only`: only loads not yet validated (ingest's enforcement)."""
    removed: dict[str, int] = {}
    only_new = (
        " AND r.load_id IN (SELECT load_id FROM raw.loads l WHERE NOT EXISTS "
        "(SELECT 1 FROM audit.validations v WHERE v.load_id = l.load_id))"
        if new_loads_only
        else ""
    )
    for kind in contract.UNIT_KINDS[unit]:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_VICTIMS} AS SELECT r.load_id, r.row_number, "
            f"k.request_id FROM raw.{kind} r JOIN {KEYS} k "
            f"ON r.agency = k.agency AND r.record_token = k.record_token WHERE true{only_new}"
        )
        match = f"USING {_VICTIMS} v WHERE t.load_id = v.load_id AND t.row_number = v.row_number"
        for table in (
            "quarantine.rows",
            "quarantine.scrubbed",
            "quarantine.row_history",
            f"staging.{kind}",
            f"raw.{kind}",
        ):
            n = count(con, f"DELETE FROM {table} t {match}")
            removed[table] = removed.get(table, 0) + n
        con.execute(
            "INSERT INTO rights.purged_rows (load_id, n_rows, request_id, purged_at) "
            f"SELECT load_id, count(*), min(request_id), now() FROM {_VICTIMS} GROUP BY load_id"
        )
        con.execute(f"DROP TABLE {_VICTIMS}")
    return removed


def _purge_hub(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The hub's linked layer and what hangs off it (after `_purge_layers`)."""
    from warehouse.assemble import children_sql

    removed: dict[str, int] = {}
    affected: set[str] = set()
    for table in ("linked.mapping", "linked.records"):
        if table_exists(con, table):
            affected |= {
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT t.child_id FROM {table} t JOIN {KEYS} k "
                    "USING (agency, record_token) WHERE t.child_id IS NOT NULL"
                ).fetchall()
            }
    if table_exists(con, "linked.link_review"):
        # the review queue names children, not records: every queued pair of a child that held
        # an opted-out record goes (the next hand-off brings back those still queued)
        removed["linked.link_review"] = count(
            con,
            "DELETE FROM linked.link_review WHERE child_id_l IN (SELECT unnest(?::VARCHAR[])) "
            "OR child_id_r IN (SELECT unnest(?::VARCHAR[]))",
            [sorted(affected), sorted(affected)],
        )
    for table in _HUB_LINKED:
        if table_exists(con, table):
            removed[table] = count(
                con,
                f"DELETE FROM {table} t USING {KEYS} k WHERE t.agency = k.agency "
                "AND t.record_token = k.record_token",
            )
    if table_exists(con, "linked.records") and table_exists(con, "linked.children"):
        before = count(con, "SELECT count(*) FROM linked.children")
        con.execute(children_sql())
        removed["linked.children"] = before - count(con, "SELECT count(*) FROM linked.children")
    orphans = sorted(affected)
    if orphans and table_exists(con, "linked.records"):
        still = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT child_id FROM linked.records WHERE child_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [orphans],
            ).fetchall()
        }
        orphans = [c for c in orphans if c not in still]
    for table in _CHILD_TABLES:
        if table_exists(con, table):
            removed[table] = count(
                con,
                f"DELETE FROM {table} WHERE child_id IN (SELECT unnest(?::VARCHAR[]))",
                [orphans],
            )
    removed["children_to_rescore"] = len(affected) - len(orphans)
    return removed


def _purge_linkage(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    removed: dict[str, int] = {}
    for table in _LINKAGE_LINKED:
        if table_exists(con, table):
            removed[table] = count(
                con,
                f"DELETE FROM {table} t USING {KEYS} k WHERE t.agency = k.agency "
                "AND t.record_token = k.record_token",
            )
    for table in _LINKAGE_PAIRED:
        if table_exists(con, table):
            removed[table] = _paired_delete(con, table)
    return removed


def _paired_delete(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return count(
        con,
        f"DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM {KEYS} k WHERE "
        "(k.agency = t.agency_l AND k.record_token = t.record_token_l) OR "
        "(k.agency = t.agency_r AND k.record_token = t.record_token_r))",
    )


def _sweep(con: duckdb.DuckDBPyConnection, done: set[str]) -> dict[str, int]:
    """Any other table of the store keyed by a record (added by a later feature): its rows go."""
    removed: dict[str, int] = {}
    single, paired = _keyed_tables(con)
    for table in single:
        if table not in done:
            removed[table] = count(
                con,
                f"DELETE FROM {table} t USING {KEYS} k WHERE t.agency = k.agency "
                "AND t.record_token = k.record_token",
            )
    for table in paired:
        if table not in done:
            removed[table] = _paired_delete(con, table)
    return removed


def purge(con: duckdb.DuckDBPyConnection, unit: str) -> dict[str, int]:
    """Every row of the store keyed by the records in `KEYS` (inside the caller's
    transaction).  Returns table -> rows removed (and, at the hub, `children_to_rescore`)."""
    removed = purge_layers(con, unit)
    removed.update(_purge_hub(con) if unit == "hub" else _purge_linkage(con))
    done = set(removed) | {"raw.loads"}
    removed.update(_sweep(con, done))
    return removed
