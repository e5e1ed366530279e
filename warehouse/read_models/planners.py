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
    every combination present (zero when empty), with `suppressed` from
    `models.forecast.suppress` and the count blanked where suppressed."""
    from models.forecast import AGE_BANDS, suppress

    wards = sorted(counts["ward_code"].unique())
    bands = [b for b, _, _ in AGE_BANDS] + (
        ["unknown"] if (counts["age_band"] == "unknown").any() else []
    )
    keys = (
        [("total", None, None)]
        + [("ward", w, None) for w in wards]
        + [("age_band", None, a) for a in bands]
        + [("ward_age_band", w, a) for w in wards for a in bands]
    )
    cells = pd.DataFrame(keys, columns=["level", "ward_code", "age_band"])
    by = counts.set_index(["ward_code", "age_band"])["n"]
    n = []
    for level, w, a in keys:
        if level == "total":
            n.append(int(by.sum()))
        elif level == "ward":
            n.append(int(by[by.index.get_level_values(0) == w].sum()))
        elif level == "age_band":
            n.append(int(by[by.index.get_level_values(1) == a].sum()))
        else:
            n.append(int(by.get((w, a), 0)))
    cells["observed_last_12m"] = np.array(n, dtype=int)
    # a count, not a forecast: only the observed rule applies (0 is shown, 1..t-1 suppressed)
    cells["expected"] = float(threshold)
    cells["suppressed"] = suppress(cells, threshold).astype(bool)
    cells["children"] = cells["observed_last_12m"].astype("Int64").where(~cells["suppressed"])
    return cells[["level", "ward_code", "age_band", "children", "suppressed"]]


def level_outputs(con: duckdb.DuckDBPyConnection, cat: str) -> list:
    """The published `forecast` (observed_last_12m) and `children_known` cells as
    `disclosure.Output`s (NA where suppressed) with their ward x age-band relations, for the
    publish-time LP audit."""
    from disclosure import TOTAL, Output

    out = []
    for table, col, measure in (
        ("forecast", "observed_last_12m", "first entries in the last 12 months"),
        ("children_known", "children", "children known to services"),
    ):
        df = con.execute(f"SELECT level, ward_code, age_band, {col} FROM {cat}.main.{table}").df()
        if df.empty:
            continue
        frame = pd.DataFrame(
            {
                "ward": df["ward_code"].where(df["level"].isin(["ward", "ward_age_band"]), TOTAL),
                "age_band": df["age_band"].where(
                    df["level"].isin(["age_band", "ward_age_band"]), TOTAL
                ),
                "n": df[col].astype("Int64"),
            }
        ).astype({"ward": str, "age_band": str})
        out.append(Output(table, frame, ("ward", "age_band"), "n", scope={"measure": measure}))
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
