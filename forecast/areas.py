"""The top-down view by area: the county's simulated paths shared out between areas.

Owns `areas` (which wards stand alone and which are pooled: a ward with fewer than `min_entries`
entries of an outcome in the last `months` complete months joins "other wards", so no area's
share rests on a handful of children) and `area_table` (per outcome, area and month: mean and
80%/95% intervals of the county's paths split multinomially by each area's share of those
months' entries).  Monthly numbers by ward are too small to model one by one; this keeps the
county's model and its uncertainty and adds the split's.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from forecast.history import entries_sql
from forecast.topdown import summarise

#: the pooled area of the wards with too few entries to stand alone
POOLED = "other"
POOLED_NAME = "Other wards (pooled: few entries each)"


def ward_entries(con: duckdb.DuckDBPyConnection, extract_date: str, months: int = 36):
    """Entries (children per month, as `forecast.history` counts) per outcome and ward in the
    `months` complete months before the extract month: `outcome, ward_code, ward_name, n`."""
    window = (
        "e.event_date < date_trunc('month', ?::DATE) "
        "AND e.event_date >= date_trunc('month', ?::DATE) - to_months(?)"
    )
    return con.execute(
        f"""
        WITH e AS ({entries_sql(where=window)})
        SELECT e.outcome, coalesce(c.ward_code, 'unknown') AS ward_code,
               any_value(w.ward_name) AS ward_name, count(*) AS n
        FROM e JOIN linked.children c USING (child_id)
        LEFT JOIN reference.wards w ON w.ward_code = c.ward_code
        GROUP BY ALL ORDER BY 1, 2
        """,
        [extract_date, extract_date, months],
    ).df()


def areas(entries: pd.DataFrame, min_entries: int) -> pd.DataFrame:
    """Per outcome, each ward's area (itself, or `POOLED`) and the area's share of entries: a
    ward stands alone with at least `min_entries`, and the pooled wards together hold at least
    `min_entries` too (or are all the wards), so every share rests on that many entries."""
    rows = []
    for outcome, g in entries.groupby("outcome"):
        total = float(g["n"].sum())
        g = g.sort_values(["n", "ward_code"])
        alone = (g["n"] >= min_entries).to_numpy()
        # the pooled wards together must rest on min_entries too: pool the smallest of the
        # rest with them until they do
        while (~alone).any() and g["n"].to_numpy()[~alone].sum() < min_entries and alone.any():
            alone[np.flatnonzero(alone)[0]] = False
        for r in g[alone].itertuples():
            rows.append((outcome, r.ward_code, r.ward_name or r.ward_code, r.n / total))
        pooled = g[~alone]
        if len(pooled):
            rows.append((outcome, POOLED, POOLED_NAME, float(pooled["n"].sum()) / total))
    return pd.DataFrame(rows, columns=["outcome", "area_code", "area_name", "share"])


def area_table(
    paths: dict[str, np.ndarray], shares: pd.DataFrame, months: pd.DatetimeIndex, seed: int
) -> pd.DataFrame:
    """Per outcome, area and month (`period` 'month'), and the 12 months together (`period`
    '12 months', dated by the first month): mean and intervals of the paths split by the
    shares."""
    rng = np.random.default_rng([seed, 29])
    parts = []
    for outcome, draws in paths.items():
        s = shares[shares["outcome"] == outcome]
        if s.empty:
            continue
        p = s["share"].to_numpy(dtype=float)
        split = rng.multinomial(draws.astype(np.int64), p / p.sum())  # (sims, months, areas)
        for j, r in enumerate(s.itertuples()):
            f = summarise(split[:, :, j], months).assign(period="month")
            year = summarise(split[:, :, j].sum(axis=1, keepdims=True), months[:1])
            year = year.assign(period="12 months", horizon=len(months))
            parts.append(
                pd.concat([f, year], ignore_index=True).assign(
                    outcome=outcome, area_code=r.area_code, area_name=r.area_name
                )
            )
    if not parts:
        return pd.DataFrame(
            columns=["outcome", "area_code", "area_name", "month", "horizon", "mean"]
        )
    return pd.concat(parts, ignore_index=True)
