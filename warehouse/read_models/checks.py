"""Checks on a built snapshot before it is swapped in: its GX suites and the raw-value guard.

Owns `targets(audience, catalog)` -- the `expectations.downstream.Target`s run on an attached
snapshot catalog with the downstream machinery (`expectations.downstream.check`/`record`), one
per committed suite `expectations/suites/published_<audience>*.json` -- and `raw_value_hits` /
`assert_no_raw_values`, which prove with DuckDB joins that no text cell of a snapshot equals, or
contains as a hex run, any token or Bloom filter value present in the hub's `raw.*` tables.

The frames hold only what a rule needs: column names and types (schema suites), scores, the
link-review queue's ids, probabilities and derived flags (analysts), counts (planners), reasons
(engineers); never a token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from expectations.downstream import Target
from joinedup.config import Settings

#: identifier-like columns no snapshot holds (besides every *_token and *_bf column)
FORBIDDEN_COLUMNS: dict[str, tuple[str, ...]] = {
    # pair_id is allowed for analysts (link_review): a one-way hash naming a queued pair
    "analysts": ("load_id", "row_number", "source_loads"),
    "planners": ("child_id", "load_id", "row_number", "source_loads", "pair_id"),
    "engineers": ("child_id", "source_loads", "pair_id"),
}
#: a run of hex digits long enough to be (part of) a token or Bloom filter
_HEX_RUN = "[0-9a-fA-F]{16,}"
#: a reason that quotes a cell value: `column=value` or a "(found ...)" list
QUOTES_VALUE = r"\(found |[A-Za-z_]+="


# ------------------------------------------------------------------ frames
def _schema_frame(catalog: str) -> Callable[[Any, Settings], pd.DataFrame]:
    """One row per column of the snapshot, with whether its table's manifest row count matches."""

    def frame(con: Any, settings: Settings) -> pd.DataFrame:
        cols = con.execute(
            "SELECT schema_name, table_name, column_name, data_type, "
            "table_name || '.' || column_name AS table_column FROM duckdb_columns() "
            "WHERE database_name = ? ORDER BY table_name, column_index",
            [catalog],
        ).df()
        manifest = dict(
            con.execute(f"SELECT table_name, n_rows FROM {catalog}.main.manifest").fetchall()
        )
        match = {}
        for schema, table in (
            cols[["schema_name", "table_name"]].drop_duplicates().itertuples(index=False)
        ):
            n = con.execute(f'SELECT count(*) FROM {catalog}."{schema}"."{table}"').fetchone()[0]
            match[table] = table == "manifest" or manifest.get(table) == n
        cols["manifest_count_matches"] = cols["table_name"].map(match).astype(bool)
        return cols

    return frame


def _analysts_scores_frame(catalog: str) -> Callable[[Any, Settings], pd.DataFrame]:
    def frame(con: Any, settings: Settings) -> pd.DataFrame:
        return con.execute(
            f"""
            SELECT s.child_id, s.score, s.rank, s.band, s.model_version,
                   (c.child_id IS NOT NULL) AS child_in_children,
                   (s.reasons IS NOT NULL AND json_type(s.reasons) = 'OBJECT') AS has_reasons,
                   (s.score_change IS NULL) = (s.previous_score IS NULL) AS change_consistent
            FROM {catalog}.main.scores s LEFT JOIN {catalog}.main.children c USING (child_id)
            """
        ).df()

    return frame


def _analysts_link_review_frame(catalog: str) -> Callable[[Any, Settings], pd.DataFrame]:
    def frame(con: Any, settings: Settings) -> pd.DataFrame:
        return con.execute(
            f"""
            SELECT q.pair_id, q.rank, q.match_probability, q.model_side, q.decision,
                   NOT coalesce(regexp_matches(CAST(q.evidence_json AS VARCHAR), '{_HEX_RUN}'),
                                false) AS evidence_has_no_hex_run,
                   (q.child_id_l IN (SELECT child_id FROM {catalog}.main.children)
                    AND q.child_id_r IN (SELECT child_id FROM {catalog}.main.children))
                       AS children_in_children
            FROM {catalog}.main.link_review q
            """
        ).df()

    return frame


def _planners_counts_frame(catalog: str) -> Callable[[Any, Settings], pd.DataFrame]:
    """Every count cell a planner sees, one row per (table, row, count column)."""
    from models.forecast import additive_groups
    from warehouse.read_models.planners import COUNT_COLUMNS

    def frame(con: Any, settings: Settings) -> pd.DataFrame:
        parts = []
        unsafe = _audited(con, catalog, int(settings.small_number_threshold))
        for table, columns in COUNT_COLUMNS.items():
            df = con.execute(f"SELECT * FROM {catalog}.main.{table}").df()
            suppressed = df["suppressed"].astype(bool).to_numpy()
            ok = np.ones(len(df), dtype=bool)
            if table in unsafe:
                ok[:] = False  # the attacker's LP narrows a hidden count (names no cell)
            if "level" in df.columns:
                for g in additive_groups(df):
                    if len(g) > 1 and suppressed[g].sum() == 1:
                        ok[g] = False
            for column in columns:
                value = pd.to_numeric(df[column], errors="coerce").astype("float64")
                parts.append(
                    pd.DataFrame(
                        {
                            "table_name": table,
                            "column_name": column,
                            "value": value,
                            "shown_nonzero": value.where(value > 0),
                            "suppressed_cell_is_blank": ~suppressed | value.isna().to_numpy(),
                            "not_recoverable_by_subtraction": ok,
                        }
                    )
                )
        cols = ["table_name", "column_name", "value", "shown_nonzero"]
        flags = ["suppressed_cell_is_blank", "not_recoverable_by_subtraction"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols + flags)

    return frame


def _audited(con: Any, catalog: str, threshold: int) -> set[str]:
    """The planners' tables protected by `disclosure` (`planning.published_outputs`, and the
    `forecast` and `children_known` cells, `planners.level_outputs`) in which the
    attacker's linear programmes (`disclosure.audit`: every published count, every relation
    within and between the outputs, non-negativity) find a shown small count or a hidden count
    narrowed below the protection level."""
    from disclosure import audit
    from warehouse.read_models.planners import level_outputs
    from warehouse.read_models.planning import published_outputs

    outputs, groups = published_outputs(con, catalog)
    outputs += level_outputs(con, catalog)
    return {f.output for f in audit(outputs, threshold, groups=groups)} if outputs else set()


def _engineers_reasons_frame(catalog: str) -> Callable[[Any, Settings], pd.DataFrame]:
    def frame(con: Any, settings: Settings) -> pd.DataFrame:
        return con.execute(
            f"""
            SELECT 'quarantined_rows' AS table_name,
                   NOT regexp_matches(reason, '{QUOTES_VALUE}') AS quotes_no_value
            FROM {catalog}.main.quarantined_rows
            UNION ALL
            SELECT 'quarantined_files',
                   NOT regexp_matches(reason, '{QUOTES_VALUE}')
            FROM {catalog}.main.quarantined_files
            """
        ).df()

    return frame


def _threshold(con: Any, settings: Settings, previous: dict | None) -> dict:
    return {"small_number_threshold": int(settings.small_number_threshold)}


def _none(con: Any, settings: Settings, previous: dict | None) -> dict:
    return {}


def _no_baseline(frame: pd.DataFrame) -> dict:
    return {}


def targets(audience: str, catalog: str) -> list[Target]:
    """The suites run on `audience`'s snapshot attached as `catalog`; Target.table (the audit
    target) is `published_<audience>` or `published_<audience>.<table>`."""
    name = f"published_{audience}"
    out = [Target(name, name, _schema_frame(catalog), _none, _no_baseline)]
    if audience == "analysts":
        frame = _analysts_scores_frame(catalog)
        out.append(Target(f"{name}.scores", f"{name}_scores", frame, _none, _no_baseline))
        frame = _analysts_link_review_frame(catalog)
        out.append(Target(f"{name}.link_review", f"{name}_link_review", frame, _none, _no_baseline))
    elif audience == "planners":
        frame = _planners_counts_frame(catalog)
        out.append(Target(f"{name}.counts", f"{name}_counts", frame, _threshold, _no_baseline))
    elif audience == "engineers":
        frame = _engineers_reasons_frame(catalog)
        out.append(Target(f"{name}.reasons", f"{name}_reasons", frame, _none, _no_baseline))
    return out


# ------------------------------------------------------------------ the raw-value guard
def _raw_values(con: duckdb.DuckDBPyConnection) -> None:
    """TEMP table raw_values(v): every distinct token and Bloom filter value in the hub's raw.*."""
    columns = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'raw' "
        "AND data_type = 'VARCHAR' AND (suffix(column_name, '_token') OR suffix(column_name, '_bf'))"
    ).fetchall()
    selects = [f'SELECT "{c}" AS v FROM raw."{t}"' for t, c in columns]
    body = " UNION ALL ".join(selects) if selects else "SELECT NULL::VARCHAR AS v WHERE false"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE raw_values AS SELECT DISTINCT v FROM ({body}) "
        "WHERE v IS NOT NULL AND v <> ''"
    )


def raw_value_hits(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    """'table.column: n' for every text/JSON column of the snapshot attached as `catalog` with a
    cell that equals, or holds as a hex run, a token or Bloom filter value of the hub's raw.*
    (`con` is the hub).  Names columns and counts only, never a value."""
    _raw_values(con)
    columns = con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = ? AND data_type IN ('VARCHAR', 'JSON') ORDER BY 1, 2, 3",
        [catalog],
    ).fetchall()
    if not columns:
        return []
    parts = []
    for schema, table, column in columns:
        cells = f'SELECT CAST("{column}" AS VARCHAR) AS c FROM {catalog}."{schema}"."{table}"'
        parts.append(
            f"SELECT '{table}.{column}' AS col, count(DISTINCT r.v) AS n FROM ("
            f"SELECT c AS w FROM ({cells}) WHERE c IS NOT NULL UNION ALL "
            f"SELECT unnest(regexp_extract_all(c, '{_HEX_RUN}')) FROM ({cells}) "
            f"WHERE c IS NOT NULL) x JOIN raw_values r ON r.v = x.w"
        )
    rows = con.execute(" UNION ALL ".join(parts)).fetchall()
    return [f"{col}: {n} raw token/filter value(s)" for col, n in rows if n]


def assert_no_raw_values(snapshot_path: Path | str, hub_con: duckdb.DuckDBPyConnection) -> None:
    """Raise AssertionError naming the columns (never the values) of the snapshot file that hold
    any token or Bloom filter value present in the hub's raw.* tables."""
    alias = "raw_guard_snapshot"
    hub_con.execute(f"ATTACH '{snapshot_path}' AS {alias} (READ_ONLY)")
    try:
        hits = raw_value_hits(hub_con, alias)
    finally:
        hub_con.execute(f"DETACH {alias}")
    if hits:
        raise AssertionError(f"{snapshot_path}: raw values reached the snapshot: {hits}")
