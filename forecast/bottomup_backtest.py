"""Backtest of the bottom-up view on the risk model's held-out months.

Owns `held_out_origins` (the as-of months the promoted model was tested on, from its metadata: no
label of theirs was seen in fitting or calibration) and `backtest` (at each such origin, the model
scores the children of that month's features, the bottom-up view forecasts the next 12 months,
and each month's forecast is compared with what happened: the children with an entry that month,
all of them, as the top-down view counts them).  It also measures *why* the two views differ:
the share of the actual entries that came from children the model scored at the origin.

Imports `forecast.bottomup` and, lazily, nothing of the model but its bundle (passed in).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from forecast import bottomup
from forecast.backtest import error_row, mase_scale
from forecast.history import OUTCOMES, entries_sql


def held_out_origins(meta: dict) -> list[pd.Timestamp]:
    """The model's test months (metadata `training_window.test` = [first, last])."""
    window = (meta.get("training_window") or {}).get("test") or []
    if len(window) != 2:
        return []
    return list(pd.date_range(pd.Timestamp(window[0]), pd.Timestamp(window[1]), freq="MS"))


def outcome_shares(counts: pd.DataFrame, before: pd.Timestamp, months: int = 36) -> dict:
    """Each outcome's share of the entries in the `months` complete months before `before`."""
    c = counts[
        (counts["month"] < before) & (counts["month"] >= before - pd.DateOffset(months=months))
    ]
    total = c.groupby("outcome")["children"].sum().reindex(list(OUTCOMES), fill_value=0)
    if total.sum() == 0:
        return {o: 1.0 / len(OUTCOMES) for o in OUTCOMES}
    return {o: float(v) / float(total.sum()) for o, v in total.items()}


def backtest(
    con: duckdb.DuckDBPyConnection,
    bundle: dict,
    meta: dict,
    counts: pd.DataFrame,
    n_sims: int = 500,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(errors, gap).  errors: one row per (origin, outcome, horizon) with the bottom-up forecast,
    its 80% interval and the actual (the same columns as `forecast.backtest.rolling_origin`, method
    'bottom_up').  gap: per (origin, outcome) the actual 12-month entries, those by children scored
    at the origin, and the bottom-up expected."""
    features = bundle["features"]
    last_month = counts["month"].max() if not counts.empty else None
    errors, gap = [], []
    for i, origin in enumerate(held_out_origins(meta)):
        if last_month is None or origin + pd.DateOffset(months=11) > last_month:
            continue
        rows = con.execute(
            f"SELECT child_id, {', '.join(features)} FROM features.child_month "
            "WHERE as_of = ? ORDER BY child_id",
            [origin.date()],
        ).df()
        if rows.empty:
            continue
        p = bundle["model"].predict_proba(rows[features].to_numpy(dtype=np.float64))[:, 1]
        shares = outcome_shares(counts, origin)
        table = bottomup.table(
            p, np.full(len(p), "all"), shares, origin, n_sims=n_sims, seed=seed + i
        )
        table = table[table["group"] == "total"]
        scale = _seasonal_scale(counts, origin)
        for r in table.itertuples():
            actual = _actual(counts, r.outcome, r.month)
            row = error_row("bottom_up", origin, r, actual, scale[r.outcome])
            errors.append({**row, "outcome": r.outcome})
        scored = _entries_by_scored(con, rows["child_id"], origin)
        for outcome in OUTCOMES:
            window = counts[
                (counts["outcome"] == outcome)
                & (counts["month"] >= origin)
                & (counts["month"] < origin + pd.DateOffset(months=12))
            ]
            gap.append(
                {
                    "origin": origin,
                    "outcome": outcome,
                    "actual_12m": int(window["children"].sum()),
                    "actual_12m_scored": int(scored.get(outcome, 0)),
                    "scored_children_with_entry": int(scored.get("children", 0)),
                    "bottom_up_12m": float(table.loc[table.outcome == outcome, "mean"].sum()),
                }
            )
    return pd.DataFrame(errors), pd.DataFrame(gap)


def _actual(counts: pd.DataFrame, outcome: str, month: pd.Timestamp) -> float:
    hit = counts[(counts["outcome"] == outcome) & (counts["month"] == month)]["children"]
    return float(hit.sum())


def _seasonal_scale(counts: pd.DataFrame, origin: pd.Timestamp) -> dict[str, float]:
    """Per outcome, the MASE scale (`backtest.mase_scale`) of the history before `origin`."""
    before = counts[counts["month"] < origin].sort_values("month")
    return {
        o: mase_scale(before.loc[before["outcome"] == o, "children"].to_numpy()) for o in OUTCOMES
    }


def _entries_by_scored(
    con: duckdb.DuckDBPyConnection, child_ids: pd.Series, origin: pd.Timestamp
) -> dict[str, int]:
    """Per outcome, the child-months with an entry in the 12 months from `origin` whose child
    was scored at the origin (counted as `forecast.history` counts: children per month), and
    under 'children' how many scored children had any entry (what the scores predict)."""
    window = "e.event_date >= ?::DATE AND e.event_date < ?::DATE + INTERVAL 12 MONTH"
    con.register("scored_ids", pd.DataFrame({"child_id": child_ids}))
    try:
        got = con.execute(
            f"""
            WITH e AS ({entries_sql("JOIN scored_ids s USING (child_id)", window)})
            SELECT outcome, count(*) AS n FROM e GROUP BY outcome
            UNION ALL SELECT 'children', count(DISTINCT child_id) FROM e
            """,
            [origin.date(), origin.date()],
        ).fetchall()
    finally:
        con.unregister("scored_ids")
    return {o: int(n) for o, n in got}
