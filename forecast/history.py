"""Monthly histories of care demand from the hub's linked events.

Owns `OUTCOMES` (the event types counted), `entries_sql` (what one entry is: a child with an
entry of an outcome in a calendar month), `monthly_counts` (children with at least one such
event per calendar month, complete months only, zero-filled, county-wide or by a grouping column)
and `series` (one outcome's county series as a pandas Series on a monthly index).
"""

from __future__ import annotations

import duckdb
import pandas as pd

#: what planners forecast: entries to a child-protection plan and to care
OUTCOMES: dict[str, str] = {
    "cp_plan_start": "entries to a child protection plan",
    "looked_after_start": "entries to care",
}


def monthly_counts(
    con: duckdb.DuckDBPyConnection, extract_date: str, by: str | None = None
) -> pd.DataFrame:
    """Children per (month, outcome[, group]) with at least one entry that month, for every
    complete month from the first event month to the month before `extract_date` (zero-filled).
    `by` is None (county) or 'age_band' (age at the month, the forecast's bands)."""
    if by not in (None, "age_band"):
        raise ValueError(f"by must be None or 'age_band' (got {by!r})")
    group_sql = ""
    if by == "age_band":
        from models.forecast import age_band_sql

        group_sql = f", {age_band_sql('(year(e.month) - c.birth_year)')} AS age_band"
    rows = con.execute(
        f"""
        SELECT e.month::DATE AS month, e.outcome {group_sql}, count(*) AS children
        FROM ({entries_sql(where="e.event_date < date_trunc('month', ?::DATE)")}) e
        JOIN linked.children c USING (child_id)
        GROUP BY ALL
        """,
        [extract_date],
    ).df()
    if rows.empty:
        return rows
    last_complete = pd.Timestamp(extract_date).to_period("M").to_timestamp() - pd.DateOffset(
        months=1
    )
    months = pd.date_range(rows["month"].min(), last_complete, freq="MS")
    keys = ["outcome"] + ([by] if by else [])
    groups = rows[keys].drop_duplicates()
    full = groups.merge(pd.DataFrame({"month": months}), how="cross")
    rows["month"] = pd.to_datetime(rows["month"])
    out = full.merge(rows, on=["month", *keys], how="left").fillna({"children": 0})
    out["children"] = out["children"].astype(int)
    return out.sort_values([*keys, "month"]).reset_index(drop=True)


def entries_sql(join: str = "", where: str = "TRUE") -> str:
    """A SELECT of the entries as this module counts them: one row per (outcome, child_id,
    month) with an entry of that outcome that month, from `linked.events e` (`join` and the
    condition `where` on `e` added)."""
    types = ", ".join(f"'{t}'" for t in OUTCOMES)
    return (
        "SELECT DISTINCT e.event_type AS outcome, e.child_id, "
        f"date_trunc('month', e.event_date) AS month FROM linked.events e {join} "
        f"WHERE e.event_type IN ({types}) AND {where}"
    )


def series(counts: pd.DataFrame, outcome: str) -> pd.Series:
    """One outcome's county-wide monthly series (a Series indexed by month start)."""
    s = counts[counts["outcome"] == outcome].groupby("month")["children"].sum()
    s.index = pd.DatetimeIndex(s.index, freq="MS")
    return s.astype(float)
