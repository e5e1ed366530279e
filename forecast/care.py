"""Children in care for the forecast stage: the placement mix of entries, today's stock and exit
rates by placement kind, and the stock's next 12 months by simulation.

Owns `entry_mix` (each kind's share of the entries to care in the last `months` complete months:
the kind of the first placement that month) and `forecast_table` (observed month-end stock by
kind and all kinds, then the forecast: `forecast.stock.simulate_stock` driven by the top-down
paths of entries to care, exits at each kind's rate over the last 36 months).  The stock history
and rates are `forecast.stock`'s.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from forecast import stock as st
from forecast.topdown import summarise

ALL = "all"


def entry_mix(con: duckdb.DuckDBPyConnection, extract_date: str, months: int = 36) -> dict:
    """{kind: share} of the entries to care in the `months` complete months before the extract
    month, by the first placement code recorded in the month of entry (`unknown` without one)."""
    codes = {str(k): v for k, v in st.contract.PLACEMENT_KINDS.items()}
    rows = con.execute(
        """
        WITH starts AS (
            SELECT child_id, date_trunc('month', event_date) AS m FROM linked.events
            WHERE event_type = 'looked_after_start'
              AND event_date < date_trunc('month', ?::DATE)
              AND event_date >= date_trunc('month', ?::DATE) - to_months(?)
        ), places AS (
            SELECT child_id, date_trunc('month', event_date) AS m,
                   arg_min(CAST(CAST(value AS INTEGER) AS VARCHAR), event_date) AS code
            FROM linked.events WHERE event_type = 'placement_start' GROUP BY ALL
        )
        SELECT p.code, count(*) AS n FROM starts s LEFT JOIN places p USING (child_id, m)
        GROUP BY ALL
        """,
        [extract_date, extract_date, months],
    ).fetchall()
    counts: dict[str, float] = {}
    for code, n in rows:
        kind = codes.get(str(code), st.UNKNOWN) if code is not None else st.UNKNOWN
        counts[kind] = counts.get(kind, 0) + n
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def forecast_table(
    stock: pd.DataFrame,
    exits: pd.DataFrame,
    mix: dict[str, float],
    care_paths: np.ndarray,
    months: pd.DatetimeIndex,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, flows).  rows: placement_kind (each kind and `all`), month, kind ('observed' |
    'forecast'), children (the count, or the forecast mean) and the forecast's intervals.
    flows: per kind the exit rate, the entry share and the stock now."""
    cols = ["placement_kind", "month", "kind", "children"]
    if stock.empty:
        empty_flows = pd.DataFrame(
            columns=["placement_kind", "exit_rate", "entry_share", "stock_now"]
        )
        return pd.DataFrame(columns=cols), empty_flows
    kinds = list(dict.fromkeys([*stock["placement_kind"].astype(str), *mix]))
    observed = stock.assign(kind="observed")[cols[:2] + ["kind", "children"]]
    totals = observed.groupby("month", as_index=False)["children"].sum()
    observed = pd.concat(
        [observed, totals.assign(placement_kind=ALL, kind="observed")], ignore_index=True
    )
    last = stock["month"].max()
    now = stock[stock["month"] == last].set_index("placement_kind")["children"]
    rates = st.exit_rates(stock, exits)
    start = {k: int(now.get(k, 0)) for k in kinds}
    rate = {k: float(rates.get(k, 0.0)) for k in kinds}
    share = {k: float(mix.get(k, 0.0)) for k in kinds}
    if sum(share.values()) <= 0:  # no recorded entries: place by today's stock
        n = max(sum(start.values()), 1)
        share = {k: start[k] / n for k in kinds}
    sims = st.simulate_stock(start, rate, share, care_paths, np.random.default_rng([seed, 17]))
    parts = [observed]
    for i, k in [*enumerate(kinds), (None, ALL)]:
        draws = sims.sum(axis=2) if i is None else sims[:, :, i]
        f = summarise(draws, months).rename(columns={"mean": "children"})
        parts.append(f.assign(placement_kind=k, kind="forecast").drop(columns="horizon"))
    rows = pd.concat(parts, ignore_index=True)
    flows = pd.DataFrame(
        {
            "placement_kind": kinds,
            "exit_rate": [rate[k] for k in kinds],
            "entry_share": [share[k] for k in kinds],
            "stock_now": [start[k] for k in kinds],
        }
    )
    return rows, flows
