"""Subject access: what one unit's store holds about one record (`warehouse.rights` audits the
request and writes the answer).  Readers only; nothing here writes or logs.

At the hub: the record's attributes (every validated version, the current one marked), rows held
in quarantine (load, row and rules), its current events (agency, month, type, value), its child
id and link probability, the child's other records (agency and count only), the child's current
score with rank, reasons and model version, and analysts' decisions about the child if a table of
them exists.  At the linkage unit: which fields are held for the record (names and whether
present, never an encoding's value), how many versions, its child id and the clerical-review
decisions about its pairs (the other record's agency only).  No answer carries a token.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from joinedup import contract
from warehouse.rights_purge import table_exists

_HUB_ATTRIBUTES = ("sex", "birth_year", "ethnicity", "ward_code")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _opted_out(con: duckdb.DuckDBPyConnection, agency: str, token: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM rights.optouts WHERE agency = ? AND record_token = ?",
            [agency, token],
        ).fetchone()[0]
    )


def _quarantined(con: duckdb.DuckDBPyConnection, unit: str, agency: str, token: str) -> list:
    out: list[dict] = []
    for kind in contract.UNIT_KINDS[unit]:
        out += _rows(
            con,
            f"SELECT '{kind}' AS kind, q.load_id, q.row_number, q.rules FROM raw.{kind} r "
            "JOIN quarantine.rows q USING (load_id, row_number) "
            "WHERE r.agency = ? AND r.record_token = ? ORDER BY q.load_id, q.row_number",
            [agency, token],
        )
    return out


def _link(con: duckdb.DuckDBPyConnection, table: str, agency: str, token: str) -> dict | None:
    if not table_exists(con, table):
        return None
    found = _rows(
        con,
        f"SELECT child_id, match_probability_max AS link_probability FROM {table} "
        "WHERE agency = ? AND record_token = ? LIMIT 1",
        [agency, token],
    )
    return found[0] if found else None


def hub_answer(con: duckdb.DuckDBPyConnection, agency: str, token: str) -> dict:
    cols = ", ".join(_HUB_ATTRIBUTES)
    attributes = _rows(
        con,
        f"SELECT a.load_id, CAST(a.extract_date AS VARCHAR) AS extract_date, {cols}, "
        "EXISTS (SELECT 1 FROM staging.current_attributes c WHERE c.load_id = a.load_id "
        "AND c.row_number = a.row_number) AS current "
        "FROM staging.attributes a WHERE a.agency = ? AND a.record_token = ? "
        "ORDER BY a.extract_date DESC, a.load_id DESC",
        [agency, token],
    )
    events = _rows(
        con,
        "SELECT agency, strftime(event_date, '%Y-%m') AS event_month, event_type, value "
        "FROM staging.current_events WHERE agency = ? AND record_token = ? "
        "ORDER BY event_date, event_type",
        [agency, token],
    )
    link = _link(con, "linked.mapping", agency, token) or _link(
        con, "linked.records", agency, token
    )
    child_id = link["child_id"] if link else None
    answer: dict[str, Any] = {
        "opted_out": _opted_out(con, agency, token),
        "attributes": attributes,
        "quarantined_rows": _quarantined(con, "hub", agency, token),
        "events": events,
        "child_id": child_id,
        "link_probability": link["link_probability"] if link else None,
        "other_records": [],
        "score": None,
        "review_decisions": [],
    }
    if child_id and table_exists(con, "linked.records"):
        answer["other_records"] = _rows(
            con,
            "SELECT agency, count(*) AS n_records FROM linked.records WHERE child_id = ? "
            "AND NOT (agency = ? AND record_token = ?) GROUP BY agency ORDER BY agency",
            [child_id, agency, token],
        )
    if child_id and table_exists(con, "scores.current"):
        scored = _rows(
            con,
            "SELECT CAST(as_of AS VARCHAR) AS as_of, score, rank, model_version, reasons "
            "FROM scores.current WHERE child_id = ? ORDER BY as_of DESC LIMIT 1",
            [child_id],
        )
        if scored:
            score = scored[0]
            if isinstance(score["reasons"], str):
                score["reasons"] = json.loads(score["reasons"])
            answer["score"] = score
    if child_id:
        answer["review_decisions"] = _child_decisions(con, child_id)
    answer["record_held"] = bool(
        attributes or events or answer["quarantined_rows"] or child_id is not None
    )
    return answer


def _child_decisions(con: duckdb.DuckDBPyConnection, child_id: str) -> list[dict]:
    """Rows about the child from any hub table of decisions, without token columns.  (The
    dashboard keeps its decisions in its own database: `joinedup dashboard access`.)"""
    tables = con.execute(
        "SELECT c.table_schema || '.' || c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
        "WHERE c.table_catalog = current_database() AND t.table_type = 'BASE TABLE' "
        "AND c.column_name = 'child_id' AND c.table_name LIKE '%decision%' ORDER BY 1"
    ).fetchall()
    out: list[dict] = []
    for (table,) in tables:
        for row in _rows(con, f"SELECT * FROM {table} WHERE child_id = ?", [child_id]):
            kept = {k: v for k, v in row.items() if "token" not in k}
            out.append({"table": table, **{k: str(v) for k, v in kept.items()}})
    return out


def linkage_answer(con: duckdb.DuckDBPyConnection, agency: str, token: str) -> dict:
    fields = [c for c in contract.PEOPLE_COLUMNS if c not in ("agency", "record_token")]
    present = ", ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '') <> '' AS \"{c}\"" for c in fields)
    current = _rows(
        con,
        f"SELECT {present} FROM staging.current_people WHERE agency = ? AND record_token = ?",
        [agency, token],
    )
    counts = con.execute(
        "SELECT (SELECT count(*) FROM staging.people WHERE agency = $1 AND record_token = $2), "
        "(SELECT count(*) FROM raw.people WHERE agency = $1 AND record_token = $2)",
        [agency, token],
    ).fetchone()
    link = _link(con, "linked.records", agency, token)
    decisions: list[dict] = []
    pending = 0
    if table_exists(con, "linked.review_decisions"):
        decisions = _rows(
            con,
            "SELECT CASE WHEN agency_l = $1 AND record_token_l = $2 THEN agency_r ELSE agency_l "
            "END AS other_record_agency, decision, CAST(decided_at AS VARCHAR) AS decided_at "
            "FROM linked.review_decisions WHERE (agency_l = $1 AND record_token_l = $2) "
            "OR (agency_r = $1 AND record_token_r = $2) ORDER BY decided_at",
            [agency, token],
        )
    if table_exists(con, "linked.review_queue"):
        pending = con.execute(
            "SELECT count(*) FROM linked.review_queue WHERE decision IS NULL AND "
            "((agency_l = $1 AND record_token_l = $2) OR (agency_r = $1 AND record_token_r = $2))",
            [agency, token],
        ).fetchone()[0]
    quarantined = _quarantined(con, "linkage", agency, token)
    return {
        "opted_out": _opted_out(con, agency, token),
        "record_held": bool(counts[1] or link),
        "fields_held": current[0] if current else {},
        "validated_versions": int(counts[0]),
        "raw_rows": int(counts[1]),
        "quarantined_rows": quarantined,
        "child_id": link["child_id"] if link else None,
        "link_probability": link["link_probability"] if link else None,
        "review_decisions": decisions,
        "review_pairs_pending": int(pending),
    }


def answer(con: duckdb.DuckDBPyConnection, unit: str, agency: str, token: str) -> dict:
    """What the unit's store holds about the record (no token in the answer)."""
    return hub_answer(con, agency, token) if unit == "hub" else linkage_answer(con, agency, token)
