"""What the read models read from the analytics hub, and the few things read beside it.

Owns `HUB_TABLES` (the hub tables and columns the read models depend on: the interface with the
linkage/hub split), `source` (a table's SQL name, or an empty stand-in with the same columns
when a stage has not run yet, so a snapshot always has its documented schema), the model
registry rows (`model_rows`), the linkage-quality hand-over (`linkage_quality_rows`) and the
readable text of every agency suite rule (`rule_texts`).

Reads only; never writes the hub.  Imports `joinedup`, `expectations.checks` and (lazily, for the
registry) `models.train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from forecast.tables import TABLES as FORECAST_TABLES
from forecast.tables import columns as forecast_columns
from joinedup.config import Settings

#: hub table -> {column: type} for every column a read model reads (the hub may hold more)
HUB_TABLES: dict[str, dict[str, str]] = {
    "linked.records": {
        "agency": "VARCHAR",
        "record_token": "VARCHAR",
        "child_id": "VARCHAR",
        "match_probability_max": "DOUBLE",
    },
    "linked.children": {
        "child_id": "VARCHAR",
        "sex": "VARCHAR",
        "birth_year": "INTEGER",
        "ethnicity": "VARCHAR",
        "ward_code": "VARCHAR",
        "imd_decile": "INTEGER",
        "n_records": "INTEGER",
        "agencies": "VARCHAR",
    },
    "linked.events": {
        "child_id": "VARCHAR",
        "agency": "VARCHAR",
        "record_token": "VARCHAR",
        "event_date": "DATE",
        "event_type": "VARCHAR",
        "value": "DOUBLE",
    },
    "scores.current": {
        "child_id": "VARCHAR",
        "as_of": "DATE",
        "score": "DOUBLE",
        "rank": "INTEGER",
        "model_version": "VARCHAR",
        "reasons": "JSON",
    },
    "scores.forecast": {
        "level": "VARCHAR",
        "ward_code": "VARCHAR",
        "ward_name": "VARCHAR",
        "age_band": "VARCHAR",
        "expected": "DOUBLE",
        "lower": "DOUBLE",
        "upper": "DOUBLE",
        "observed_last_12m": "INTEGER",
        "suppressed": "BOOLEAN",
        "expected_cost": "DOUBLE",
        "as_of": "DATE",
        "model_version": "VARCHAR",
    },
    "reference.wards": {"ward_code": "VARCHAR", "ward_name": "VARCHAR", "imd_decile": "INTEGER"},
    # the forecast stage's monthly tables (forecast.tables), every column
    **{t: forecast_columns(t) for t in FORECAST_TABLES},
    "linked.link_review": {
        "pair_id": "VARCHAR",
        "rank": "INTEGER",
        "agency_l": "VARCHAR",
        "child_id_l": "VARCHAR",
        "agency_r": "VARCHAR",
        "child_id_r": "VARCHAR",
        "match_probability": "DOUBLE",
        "match_weight": "DOUBLE",
        "model_side": "VARCHAR",
        "evidence_json": "JSON",
        "decision": "VARCHAR",
        "queued_at": "TIMESTAMP",
        "run_id": "VARCHAR",
    },
}


class HubSchemaError(RuntimeError):
    """A hub table exists but lacks a column the read models need."""


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str] | None:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return {r[0] for r in rows} or None


def source(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The SQL name to read hub table `name` ('schema.table') from: the table itself, or an
    empty temporary stand-in with `HUB_TABLES[name]`'s columns when the table does not exist
    yet (its stage has not run).  Raises HubSchemaError when the table lacks a needed column."""
    schema, table = name.split(".")
    wanted = HUB_TABLES[name]
    have = _columns(con, schema, table)
    if have is None:
        stand_in = f"empty_{schema}_{table}"
        cols = ", ".join(f'"{c}" {t}' for c, t in wanted.items())
        con.execute(f"CREATE OR REPLACE TEMP TABLE {stand_in} ({cols})")
        return f"temp.main.{stand_in}"
    missing = [c for c in wanted if c not in have]
    if missing:
        raise HubSchemaError(
            f"publish: hub table {name} lacks column(s) {', '.join(missing)}; the read models "
            "expect the analytics hub schema (docs/read-models.md)"
        )
    return f'"{schema}"."{table}"'


# ------------------------------------------------------------------ beside the hub
#: the registry rows' columns, shared by the analysts' and engineers' `models` tables
MODEL_COLUMNS: dict[str, str] = {
    "version": "VARCHAR",
    "created_at": "VARCHAR",
    "model_kind": "VARCHAR",
    "is_current": "BOOLEAN",
    "promoted": "BOOLEAN",
    "gate_version": "VARCHAR",
    "gate_reasons": "JSON",
    "test_roc_auc": "DOUBLE",
    "test_precision_at_capacity": "DOUBLE",
    "card_path": "VARCHAR",
    "calibration_deciles": "JSON",
}
#: what a published calibration decile keeps (test child-months per tenth of scores)
CALIBRATION_KEYS: tuple[str, ...] = ("bin", "n", "mean_predicted", "observed_rate")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_rows(settings: Settings) -> list[tuple]:
    """One row per registered model version (`MODEL_COLUMNS` order), oldest first."""
    from models.card import CARD_NAME
    from models.registry import registered_versions

    rows = []
    for m in registered_versions(settings):
        card = settings.models_dir / m["version"] / f"{CARD_NAME}.html"
        rows.append(
            (
                m["version"],
                None if m["created_at"] is None else str(m["created_at"]),
                m["model_kind"],
                bool(m["current"]),
                m["promoted"],
                None if m["gate_version"] is None else str(m["gate_version"]),
                json.dumps(list(m["gate_reasons"])),
                _number(m["test_roc_auc"]),
                _number(m["test_precision_at_capacity"]),
                str(card) if card.exists() else None,
                json.dumps(
                    [
                        {k: d.get(k) for k in CALIBRATION_KEYS}
                        for d in m.get("calibration_deciles") or []
                    ]
                ),
            )
        )
    return rows


def quality_path(settings: Settings) -> Path:
    """The linkage unit's hand-over: aggregates only (counts, precision/recall, thresholds)."""
    return settings.outputs_dir / "linkage" / "quality.json"


def _flatten(value: Any, path: str, out: list[tuple]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out)
    else:
        number = _number(value)
        if isinstance(value, bool):
            number = float(value)
        text = None if number is not None or value is None else str(value)[:200]
        out.append((path, number, text))


def linkage_quality_rows(settings: Settings) -> list[tuple]:
    """quality.json flattened to (metric path, number, text) rows; [] when it is absent."""
    path = quality_path(settings)
    if not path.exists():
        return []
    out: list[tuple] = []
    _flatten(json.loads(path.read_text(encoding="utf-8")), "", out)
    return out


def rule_texts() -> list[tuple[str, str]]:
    """(rule tag, readable rule) for every expectation of the committed agency suites: the tags
    `quarantine.rows.rules` holds, mapped to text that never quotes a value."""
    from expectations.checks import SUITES_DIR, load_named_suite
    from joinedup import contract

    out: dict[str, str] = {}
    for path in sorted(SUITES_DIR.glob("*.json")):
        agency = path.stem.rsplit("_", 1)[0]
        if agency not in contract.AGENCIES:
            continue
        for e in load_named_suite(path.stem)["expectations"]:
            column = e["kwargs"].get("column")
            tag = f"{e['type']}:{column}" if column else e["type"]
            out.setdefault(tag, (e.get("meta") or {}).get("rule") or tag)
    return sorted(out.items())
