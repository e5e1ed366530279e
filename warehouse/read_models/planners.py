"""The planners' read model: aggregates only, small numbers already suppressed.

Owns the planners' `TABLES` (docs/read-models.md, "Planners") and `build`: the care-demand
forecast as the forecast stage suppressed it (`scores.forecast`), children known to services by
ward and age band (suppressed with the forecast's own rule, `models.forecast.suppress`: primary
below `settings.small_number_threshold`, then secondary so no cell is recoverable from its
margins) and last-12-months activity by agency and event type (no margins are published, so
primary suppression suffices), and the care-demand tables of `warehouse.read_models.planning`
(monthly forecasts of both views, history, backtests, scenario inputs, children in care; counts
protected jointly with `disclosure`).  No child id, token, load id or single child's row anywhere.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from joinedup.config import Settings
from models.forecast import age_band_sql
from warehouse.read_models import planning
from warehouse.read_models.hub import HUB_TABLES, source

TABLES: dict[str, dict[str, str]] = {
    "forecast": dict(HUB_TABLES["scores.forecast"]),
    "children_known": {
        "level": "VARCHAR",
        "ward_code": "VARCHAR",
        "ward_name": "VARCHAR",
        "age_band": "VARCHAR",
        "children": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
    "activity_12m": {
        "agency": "VARCHAR",
        "event_type": "VARCHAR",
        "children": "INTEGER",
        "events": "INTEGER",
        "suppressed": "BOOLEAN",
        "as_of": "DATE",
    },
    **planning.TABLES,
}

#: every count column a planner sees: NULL (suppressed) or 0 or >= the threshold
COUNT_COLUMNS: dict[str, tuple[str, ...]] = {
    "forecast": ("expected", "observed_last_12m"),
    "children_known": ("children",),
    "activity_12m": ("children", "events"),
    **planning.COUNT_COLUMNS,
}


def children_known_cells(counts: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """The total, ward, age-band and ward x age-band cells of `counts(ward_code, age_band, n)`,
    every combination present (zero when empty; every age band), protected by
    `disclosure.protect` over their relations (0 is shown, 1..t-1 suppressed, then secondary)
    and the count blanked where suppressed."""
    from disclosure import TOTAL, from_frame, protect
    from models.forecast import AGE_BANDS

    bands = [b for b, _, _ in AGE_BANDS]
    missing = pd.DataFrame(
        {"ward_code": counts["ward_code"].iloc[0] if len(counts) else "unknown",
         "age_band": [b for b in bands if b not in set(counts["age_band"])], "n": 0}
    )  # fmt: skip
    full = pd.concat([counts, missing], ignore_index=True).rename(columns={"ward_code": "ward"})
    out = from_frame(full[["ward", "age_band", "n"]], ["ward", "age_band"], "n", "children_known")
    [f] = protect([out], threshold, cost="value")
    ward, band = f["ward"] != TOTAL, f["age_band"] != TOTAL
    level = np.select([ward & band, ward, band], ["ward_age_band", "ward", "age_band"], "total")
    cells = pd.DataFrame(
        {
            "level": level,
            "ward_code": f["ward"].where(ward),
            "age_band": f["age_band"].where(band),
            "children": f["n"],
            "suppressed": f["suppressed"].astype(bool),
        }
    )
    order = {"total": 0, "ward": 1, "age_band": 2, "ward_age_band": 3}
    return cells.sort_values(
        ["level", "ward_code", "age_band"], key=lambda c: c.map(order) if c.name == "level" else c
    ).reset_index(drop=True)


def level_outputs(con: duckdb.DuckDBPyConnection, cat: str) -> list:
    """The published `forecast` (observed_last_12m) and `children_known` cells as
    `disclosure.Output`s (NA where suppressed; `models.forecast.cells_output`), for the
    publish-time LP audit."""
    from models.forecast import cells_output

    out = []
    for table, col, measure in (
        ("forecast", "observed_last_12m", "first entries in the last 12 months"),
        ("children_known", "children", "children known to services"),
    ):
        df = con.execute(f"SELECT level, ward_code, age_band, {col} FROM {cat}.main.{table}").df()
        if len(df):
            out.append(cells_output(df, col, table, scope={"measure": measure}))
    return out


def build(
    con: duckdb.DuckDBPyConnection, settings: Settings, cat: str, previous: str | None = None
) -> None:
    """Fill the planners' tables (already created empty in catalog `cat`)."""
    t = int(settings.small_number_threshold)
    extract = pd.Timestamp(settings.extract_date).date()
    forecast = source(con, "scores.forecast")
    cols = ", ".join(f'"{c}"' for c in TABLES["forecast"])
    con.execute(
        f"INSERT INTO {cat}.main.forecast ({cols}) SELECT {cols} FROM {forecast} "
        "ORDER BY level, ward_code NULLS FIRST, age_band NULLS FIRST"
    )

    children, wards = source(con, "linked.children"), source(con, "reference.wards")
    counts = con.execute(
        f"""
        SELECT coalesce(ward_code, 'unknown') AS ward_code,
               {age_band_sql(f"({extract.year} - birth_year)")} AS age_band, count(*) AS n
        FROM {children} GROUP BY ALL
        """
    ).df()
    cells = children_known_cells(counts, t)
    con.register("children_known_df", cells)
    try:
        con.execute(
            f"""
            INSERT INTO {cat}.main.children_known BY NAME
            SELECT k.level, k.ward_code, w.ward_name, k.age_band, k.children::INTEGER AS children,
                   k.suppressed, ?::DATE AS as_of
            FROM children_known_df k
            LEFT JOIN (SELECT ward_code, any_value(ward_name) AS ward_name FROM {wards}
                       GROUP BY 1) w USING (ward_code)
            """,
            [extract],
        )
    finally:
        con.unregister("children_known_df")

    events = source(con, "linked.events")
    con.execute(
        f"""
        INSERT INTO {cat}.main.activity_12m BY NAME
        WITH a AS (
            SELECT agency, event_type, count(DISTINCT child_id) AS children, count(*) AS events
            FROM {events}
            WHERE event_date >= ?::DATE - INTERVAL 12 MONTH AND event_date < ?::DATE
            GROUP BY ALL
        )
        SELECT agency, event_type,
               CASE WHEN children >= {t} THEN children END AS children,
               CASE WHEN children >= {t} THEN events END AS events,
               children < {t} AS suppressed, ?::DATE AS as_of
        FROM a ORDER BY agency, event_type
        """,
        [extract, extract, extract],
    )
    planning.build(con, settings, cat)
