"""The engineers' read model: is the pipeline healthy, and what was refused and why.

Owns the engineers' `TABLES` (docs/read-models.md, "Engineers") and `build`: stage runs
(`audit.stage_runs`), validation outcomes (`audit.validations`: suite, outcome, counts and rule
summaries, which hold no cell values), loads (`raw.loads` metadata, never a row; the
header's column count, not the header, which is a data row when a file arrives without one), quarantined rows
and files (load, row number, rules, and a reason rebuilt from the rules' committed text -- the
stored reasons may quote a cell value, so they are not copied), releases (counts, no free
text), the linkage-quality hand-over (quality.json, aggregates only) and the model registry.
No child id, token, Bloom filter or cell value.
"""

from __future__ import annotations

import duckdb

from joinedup.config import Settings
from warehouse.read_models.hub import MODEL_COLUMNS, linkage_quality_rows, model_rows, rule_texts

TABLES: dict[str, dict[str, str]] = {
    "stage_runs": {
        "run_id": "VARCHAR",
        "stage": "VARCHAR",
        "started_at": "TIMESTAMP",
        "finished_at": "TIMESTAMP",
        "seconds": "DOUBLE",
        "status": "VARCHAR",
        "error": "VARCHAR",
        "run_by": "VARCHAR",
        "figures": "JSON",
    },
    "validations": {
        "validation_id": "VARCHAR",
        "load_id": "VARCHAR",
        "target": "VARCHAR",
        "suite_name": "VARCHAR",
        "suite_version": "VARCHAR",
        "success": "BOOLEAN",
        "outcome": "VARCHAR",
        "n_rows": "BIGINT",
        "n_staged": "BIGINT",
        "n_quarantined": "BIGINT",
        "statistics": "JSON",
        "results": "JSON",
        "validated_at": "TIMESTAMP",
        "validated_by": "VARCHAR",
    },
    "loads": {
        "load_id": "VARCHAR",
        "agency": "VARCHAR",
        "kind": "VARCHAR",
        "file_name": "VARCHAR",
        "n_rows": "BIGINT",
        "n_columns": "INTEGER",
        "extract_date": "DATE",
        "status": "VARCHAR",
        "loaded_at": "TIMESTAMP",
    },
    "quarantined_rows": {
        "load_id": "VARCHAR",
        "row_number": "BIGINT",
        "agency": "VARCHAR",
        "kind": "VARCHAR",
        "rules": "VARCHAR",
        "reason": "VARCHAR",
        "quarantined_at": "TIMESTAMP",
    },
    "quarantined_files": {
        "load_id": "VARCHAR",
        "file_name": "VARCHAR",
        "agency": "VARCHAR",
        "kind": "VARCHAR",
        "reason": "VARCHAR",
        "kept_copy": "BOOLEAN",
        "quarantined_at": "TIMESTAMP",
        "released_at": "TIMESTAMP",
        "release_id": "VARCHAR",
    },
    "quarantine_history": {
        "release_id": "VARCHAR",
        "load_id": "VARCHAR",
        "row_number": "BIGINT",
        "agency": "VARCHAR",
        "kind": "VARCHAR",
        "rules": "VARCHAR",
        "action": "VARCHAR",
        "new_rules": "VARCHAR",
        "quarantined_at": "TIMESTAMP",
        "released_at": "TIMESTAMP",
        "released_by": "VARCHAR",
    },
    "releases": {
        "release_id": "VARCHAR",
        "load_id": "VARCHAR",
        "agency": "VARCHAR",
        "kind": "VARCHAR",
        "file_name": "VARCHAR",
        "scope": "VARCHAR",
        "mode": "VARCHAR",
        "suite_name": "VARCHAR",
        "suite_version": "VARCHAR",
        "rows_considered": "BIGINT",
        "rows_released": "BIGINT",
        "rows_still_quarantined": "BIGINT",
        "rows_rules_updated": "BIGINT",
        "batch_released": "BOOLEAN",
        "released_at": "TIMESTAMP",
        "released_by": "VARCHAR",
    },
    "linkage_quality": {"metric": "VARCHAR", "value": "DOUBLE", "text": "VARCHAR"},
    "models": MODEL_COLUMNS,
}

#: a validation's "(found v1, v2)" list of offending values, up to the next " | " or the end
_FOUND = r" \(found .*?\)( \| |$)"


def _copy(con: duckdb.DuckDBPyConnection, cat: str, table: str, select: str) -> None:
    cols = ", ".join(f'"{c}"' for c in TABLES[table])
    con.execute(f"INSERT INTO {cat}.main.{table} ({cols}) {select}")


def build(
    con: duckdb.DuckDBPyConnection, settings: Settings, cat: str, previous: str | None = None
) -> None:
    """Fill the engineers' tables (already created empty in catalog `cat`)."""
    _copy(
        con,
        cat,
        "stage_runs",
        "SELECT run_id, stage, started_at, finished_at, "
        "round(date_diff('millisecond', started_at, finished_at) / 1000.0, 3), status, error, "
        "run_by, figures FROM audit.stage_runs ORDER BY started_at, stage",
    )
    _copy(
        con,
        cat,
        "validations",
        "SELECT validation_id, load_id, target, suite_name, suite_version, success, outcome, "
        "n_rows, n_staged, n_quarantined, statistics, results, validated_at, validated_by "
        "FROM audit.validations ORDER BY validated_at, validation_id",
    )
    _copy(
        con,
        cat,
        "loads",
        "SELECT load_id, agency, kind, file_name, n_rows, len(string_split(header, ',')), "
        "extract_date, status, "
        "loaded_at FROM raw.loads ORDER BY loaded_at, load_id",
    )
    con.execute("CREATE OR REPLACE TEMP TABLE rule_texts (tag VARCHAR, rule VARCHAR)")
    con.executemany("INSERT INTO rule_texts VALUES (?, ?)", rule_texts())
    _copy(
        con,
        cat,
        "quarantined_rows",
        """
        WITH tags AS (
            SELECT load_id, row_number, unnest(string_split(rules, '; ')) AS tag,
                   generate_subscripts(string_split(rules, '; '), 1) AS i
            FROM quarantine.rows
        ), text AS (
            SELECT load_id, row_number, string_agg(coalesce(t.rule, tags.tag), '; ' ORDER BY i)
                AS text
            FROM tags LEFT JOIN rule_texts t USING (tag) GROUP BY ALL
        )
        SELECT q.load_id, q.row_number, q.agency, q.kind, q.rules,
               coalesce(l.file_name, q.kind) || ' row ' || q.row_number || ': ' || x.text,
               q.quarantined_at
        FROM quarantine.rows q
        JOIN text x USING (load_id, row_number)
        LEFT JOIN raw.loads l USING (load_id)
        ORDER BY q.load_id, q.row_number
        """,
    )
    _copy(
        con,
        cat,
        "quarantined_files",
        f"SELECT load_id, file_name, agency, kind, "
        f"regexp_replace(reason, '{_FOUND}', ' (values withheld)\\1', 'g'), "
        "stored_path IS NOT NULL, quarantined_at, released_at, release_id "
        "FROM quarantine.files ORDER BY quarantined_at, file_name",
    )
    _copy(
        con,
        cat,
        "quarantine_history",
        "SELECT release_id, load_id, row_number, agency, kind, rules, action, new_rules, "
        "quarantined_at, released_at, released_by FROM quarantine.row_history "
        "ORDER BY released_at, load_id, row_number",
    )
    _copy(
        con,
        cat,
        "releases",
        "SELECT release_id, load_id, agency, kind, file_name, scope, mode, suite_name, "
        "suite_version, rows_considered, rows_released, rows_still_quarantined, "
        "rows_rules_updated, batch_released, released_at, released_by FROM audit.releases "
        "ORDER BY released_at, release_id",
    )
    quality = linkage_quality_rows(settings)
    if quality:
        con.executemany(
            f"INSERT INTO {cat}.main.linkage_quality (metric, value, text) VALUES (?, ?, ?)",
            quality,
        )
    rows = model_rows(settings)
    if rows:
        marks = ", ".join("?" for _ in MODEL_COLUMNS)
        con.executemany(
            f"INSERT INTO {cat}.main.models ({', '.join(MODEL_COLUMNS)}) VALUES ({marks})", rows
        )
