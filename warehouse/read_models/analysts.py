"""The analysts' read model: pseudonymous child-level tables for reviewing flagged children.

Owns the analysts' `TABLES` (documented in docs/read-models.md, "Analysts") and `build`, which
fills them in an attached snapshot catalog from `linked.children`, `linked.events`,
`linked.records` (only the link's match probability), `scores.current`, `reference.wards`,
`linked.link_review` (the linkage unit's clerical review queue: pair ids, child ids, evidence
labels and weights) and the model registry.  Deliberately absent: every token (record, event,
name, date of birth, number), every Bloom filter, load ids and row numbers, and anything from
raw, staging, quarantine or audit.  A score is a prompt for professional judgement, never a
decision; a link decision is made in the dashboard but applied only at the linkage unit.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from joinedup.config import Settings
from models.forecast import age_band_sql
from warehouse.read_models.hub import HUB_TABLES, MODEL_COLUMNS, model_rows, source

TABLES: dict[str, dict[str, str]] = {
    "children": {
        "child_id": "VARCHAR",
        "sex": "VARCHAR",
        "age_band": "VARCHAR",
        "ethnicity": "VARCHAR",
        "ward_code": "VARCHAR",
        "ward_name": "VARCHAR",
        "imd_decile": "INTEGER",
        "agencies": "VARCHAR",
        "n_records": "INTEGER",
    },
    "timeline": {
        "child_id": "VARCHAR",
        "agency": "VARCHAR",
        "event_month": "DATE",
        "event_type": "VARCHAR",
        "value": "DOUBLE",
        "match_probability": "DOUBLE",
    },
    "scores": {
        "child_id": "VARCHAR",
        "as_of": "DATE",
        "score": "DOUBLE",
        "rank": "INTEGER",
        "band": "VARCHAR",
        "model_version": "VARCHAR",
        "reasons": "JSON",
        "previous_as_of": "DATE",
        "previous_score": "DOUBLE",
        "score_change": "DOUBLE",
    },
    "score_history": {
        "child_id": "VARCHAR",
        "as_of": "DATE",
        "score": "DOUBLE",
        "rank": "INTEGER",
        "model_version": "VARCHAR",
    },
    "models": MODEL_COLUMNS,
    "link_review": dict(HUB_TABLES["linked.link_review"]),
}

#: the score history keeps this many scoring dates (as_of), the latest
HISTORY_DATES = 24

#: score bands by rank against the council's monthly capacity (settings.capacity_per_month)
BANDS: tuple[str, ...] = ("within_capacity", "next_capacity", "below_capacity")


def _previous_scores(con: duckdb.DuckDBPyConnection, previous: str | None) -> str:
    """The previous analysts' snapshot's scores when it has the columns the change needs, else
    an empty relation of the same shape."""
    if previous is not None:
        have = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
                "AND schema_name = 'main' AND table_name = 'scores'",
                [previous],
            ).fetchall()
        }
        if {"child_id", "as_of", "score", "previous_as_of", "previous_score"} <= have:
            return f"{previous}.main.scores"
    return (
        "(SELECT NULL::VARCHAR AS child_id, NULL::DATE AS as_of, NULL::DOUBLE AS score, "
        "NULL::DATE AS previous_as_of, NULL::DOUBLE AS previous_score WHERE false)"
    )


def _score_history(con: duckdb.DuckDBPyConnection, cat: str, previous: str | None) -> None:
    """Each child's scores at the last `HISTORY_DATES` scoring dates: the previous snapshot's
    history (when it has one) with this snapshot's scores replacing any at the same date."""
    have_prev = (
        previous is not None
        and con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name = 'score_history'",
            [previous],
        ).fetchone()[0]
    )
    old = (
        f"SELECT child_id, as_of, score, rank, model_version FROM {previous}.main.score_history "
        f"WHERE as_of NOT IN (SELECT DISTINCT as_of FROM {cat}.main.scores)"
        if have_prev
        else "SELECT NULL::VARCHAR, NULL::DATE, NULL::DOUBLE, NULL::INTEGER, NULL::VARCHAR WHERE false"
    )
    con.execute(
        f"""
        INSERT INTO {cat}.main.score_history BY NAME
        WITH h AS (
            SELECT child_id, as_of, score, rank, model_version FROM {cat}.main.scores
            UNION ALL {old}
        ),
        keep AS (SELECT DISTINCT as_of FROM h ORDER BY as_of DESC LIMIT {HISTORY_DATES})
        SELECT h.* FROM h WHERE as_of IN (SELECT as_of FROM keep)
        ORDER BY child_id, as_of
        """
    )


def build(
    con: duckdb.DuckDBPyConnection, settings: Settings, cat: str, previous: str | None = None
) -> None:
    """Fill the analysts' tables (already created empty in catalog `cat`).  `previous` is the
    catalog of the snapshot being replaced (for each child's score change), if any."""
    extract = pd.Timestamp(settings.extract_date).date()
    children, wards = source(con, "linked.children"), source(con, "reference.wards")
    con.execute(
        f"""
        INSERT INTO {cat}.main.children BY NAME
        SELECT c.child_id, c.sex, {age_band_sql(f"({extract.year} - c.birth_year)")} AS age_band,
               c.ethnicity, c.ward_code, w.ward_name, c.imd_decile, c.agencies, c.n_records
        FROM {children} c
        LEFT JOIN (SELECT ward_code, any_value(ward_name) AS ward_name FROM {wards} GROUP BY 1) w
            USING (ward_code)
        ORDER BY c.child_id
        """
    )
    events, records = source(con, "linked.events"), source(con, "linked.records")
    con.execute(
        f"""
        INSERT INTO {cat}.main.timeline BY NAME
        SELECT e.child_id, e.agency, date_trunc('month', e.event_date)::DATE AS event_month,
               e.event_type, e.value, r.match_probability_max AS match_probability
        FROM {events} e
        LEFT JOIN {records} r ON r.agency = e.agency AND r.record_token = e.record_token
        ORDER BY e.child_id, event_month, e.agency, e.event_type
        """
    )
    scores, prev = source(con, "scores.current"), _previous_scores(con, previous)
    capacity = int(settings.capacity_per_month)
    con.execute(
        f"""
        INSERT INTO {cat}.main.scores BY NAME
        WITH carried AS (
            SELECT s.*,
                   CASE WHEN p.as_of < s.as_of THEN p.as_of
                        WHEN p.as_of = s.as_of THEN p.previous_as_of END AS previous_as_of,
                   CASE WHEN p.as_of < s.as_of THEN p.score
                        WHEN p.as_of = s.as_of THEN p.previous_score END AS previous_score
            FROM {scores} s LEFT JOIN {prev} p USING (child_id)
        )
        SELECT child_id, as_of, score, rank,
               CASE WHEN rank <= {capacity} THEN '{BANDS[0]}'
                    WHEN rank <= {2 * capacity} THEN '{BANDS[1]}'
                    ELSE '{BANDS[2]}' END AS band,
               model_version, reasons, previous_as_of, previous_score,
               score - previous_score AS score_change
        FROM carried ORDER BY rank
        """
    )
    _score_history(con, cat, previous)
    link_review = source(con, "linked.link_review")
    cols = ", ".join(TABLES["link_review"])
    con.execute(
        f"INSERT INTO {cat}.main.link_review ({cols}) SELECT {cols} FROM {link_review} "
        "ORDER BY rank, pair_id"
    )
    rows = model_rows(settings)
    if rows:
        marks = ", ".join("?" for _ in MODEL_COLUMNS)
        con.executemany(
            f"INSERT INTO {cat}.main.models ({', '.join(MODEL_COLUMNS)}) VALUES ({marks})", rows
        )
