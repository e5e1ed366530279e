"""The planners' outputs, read from the planners' snapshot only (aggregates, counts already
protected by disclosure control at publish), each as a named table of rows that the page shows
and the CSV and Excel exports write unchanged: what is exported is exactly what is shown.

Owns `OUTCOMES`, `KIND_NAMES`, `Table`, `Snapshot` (a request's rows, each queried once),
`tables()` (every planner output by name), `scenario_inputs`
(the published paths, risk curve, stock and flows as `forecast.scenarios.Inputs`) and
`scenario_tables` (a scenario's result as tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from dashboard import readmodels as rm
from forecast import scenarios

OUTCOMES = {
    "cp_plan_start": "Entries to a child protection plan",
    "looked_after_start": "Entries to care",
}
KIND_NAMES = {
    "foster": "Foster care",
    "kinship": "Kinship (connected persons)",
    "residential": "Residential",
    "other": "Other placements",
    "unknown": "Placement not recorded",
    "small_groups": "Small groups (pooled)",
    "all": "All children in care",
}
VIEW_NAMES = {
    "top_down": "Top-down",
    "bottom_up": "Bottom-up",
    "seasonal_naive": "Seasonal-naive (baseline)",
    "top_down_heldout": "Top-down, on the bottom-up's months",
}
SUPPRESSED = "suppressed"


@dataclass
class Table:
    """One planner output: a title, column headings and rows of display values."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""


def _r(x: Any, nd: int = 1) -> Any:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return round(float(x), nd)


def _count(row: dict, col: str = "children") -> Any:
    return SUPPRESSED if row["suppressed"] else int(row[col])


class Snapshot:
    """The planners' rows one request uses, each queried at most once (the page draws charts and
    tables from the same rows)."""

    @cached_property
    def forecast(self) -> list[dict]:
        return forecast_rows()

    @cached_property
    def monthly(self) -> list[dict]:
        return history_rows("monthly")

    @cached_property
    def quarterly(self) -> list[dict]:
        return history_rows("quarterly")

    @cached_property
    def backtest(self) -> list[dict]:
        return backtest_rows()

    @cached_property
    def care(self) -> tuple[list[dict], list[dict]]:
        return care_rows()


def forecast_rows() -> list[dict]:
    return rm.query(
        "planners",
        "SELECT outcome, view, level, age_band, month, horizon, mean, lower_80, upper_80, "
        "lower_95, upper_95, method FROM forecast_monthly ORDER BY outcome, view, level DESC, "
        "age_band, month",
    )


def forecast_table(snap: Snapshot) -> Table:
    rows = snap.forecast
    t = Table(
        "forecast",
        "Forecast by month: both views, county and age bands",
        ["Outcome", "View", "Age band", "Month", "Expected", "80% from", "80% to", "95% from",
         "95% to", "Method"],
    )  # fmt: skip
    for r in rows:
        t.rows.append(
            [OUTCOMES[r["outcome"]], VIEW_NAMES.get(r["view"], r["view"]),
             "all" if r["level"] == "total" else r["age_band"], r["month"].isoformat(),
             _r(r["mean"]), _r(r["lower_80"], 0), _r(r["upper_80"], 0), _r(r["lower_95"], 0),
             _r(r["upper_95"], 0), r["method"]]
        )  # fmt: skip
    return t


def history_rows(table: str) -> list[dict]:
    if table == "monthly":
        return rm.query(
            "planners",
            "SELECT outcome, month, children, suppressed FROM history_monthly "
            "ORDER BY outcome, month",
        )
    return rm.query(
        "planners",
        "SELECT outcome, age_band, quarter, children, suppressed FROM history_quarterly "
        "ORDER BY outcome, age_band = 'all' DESC, age_band, quarter",
    )


def history_table(snap: Snapshot) -> Table:
    t = Table(
        "history",
        "What happened: children entering, by quarter (county and age bands) and by month",
        ["Outcome", "Age band", "Period", "Children"],
        note="Counts from 1 to the threshold are suppressed, and others with them so that no "
        "suppressed count can be worked out from totals or from the other tables.",
    )
    for r in snap.quarterly:
        q = r["quarter"]
        t.rows.append(
            [OUTCOMES[r["outcome"]], r["age_band"], f"{q.year} Q{(q.month - 1) // 3 + 1}",
             _count(r)]
        )  # fmt: skip
    for r in snap.monthly:
        t.rows.append([OUTCOMES[r["outcome"]], "all", f"{r['month']:%b %Y}", _count(r)])
    return t


def backtest_rows() -> list[dict]:
    return rm.query(
        "planners",
        "SELECT view, outcome, horizon, forecasts, mae, mase, coverage_80, baseline_mae, "
        "beats_baseline, first_origin, last_origin FROM forecast_backtest "
        "ORDER BY outcome, view, horizon",
    )


def backtest_table(snap: Snapshot) -> Table:
    t = Table(
        "backtest",
        "Backtests: rolling-origin, per months ahead",
        ["Outcome", "View", "Months ahead", "Forecasts", "MAE", "MASE", "80% coverage",
         "Baseline MAE", "Beats baseline"],
    )  # fmt: skip
    for r in snap.backtest:
        beats = r["beats_baseline"]
        t.rows.append(
            [OUTCOMES[r["outcome"]], VIEW_NAMES.get(r["view"], r["view"]), r["horizon"],
             r["forecasts"], _r(r["mae"], 2), _r(r["mase"], 2), _r(r["coverage_80"], 2),
             _r(r["baseline_mae"], 2), "" if beats is None else ("yes" if beats else "NO")]
        )  # fmt: skip
    return t


def care_rows() -> tuple[list[dict], list[dict]]:
    observed = rm.query(
        "planners",
        "SELECT placement_kind, month, children, suppressed FROM care_stock "
        "ORDER BY month, placement_kind",
    )
    forecast = rm.query(
        "planners",
        "SELECT placement_kind, month, mean, lower_80, upper_80, lower_95, upper_95 "
        "FROM care_stock_forecast ORDER BY month, placement_kind",
    )
    return observed, forecast


def care_table(snap: Snapshot) -> Table:
    observed, forecast = snap.care
    t = Table(
        "care",
        "Children in care at the month end by placement kind: what happened, then the forecast",
        ["Placement", "Month", "Children (happened)", "Forecast", "80% from", "80% to"],
        note="Placement kinds whose numbers are suppressed are not forecast apart; they are in "
        "the total.",
    )
    for r in observed:
        t.rows.append(
            [KIND_NAMES.get(r["placement_kind"], r["placement_kind"]), f"{r['month']:%b %Y}",
             _count(r), "", "", ""]
        )  # fmt: skip
    for r in forecast:
        t.rows.append(
            [KIND_NAMES.get(r["placement_kind"], r["placement_kind"]), f"{r['month']:%b %Y}", "",
             _r(r["mean"]), _r(r["lower_80"], 0), _r(r["upper_80"], 0)]
        )  # fmt: skip
    return t


def area_table(snap: Snapshot) -> Table:
    rows = rm.query(
        "planners",
        "SELECT level, ward_name, age_band, expected, lower, upper, observed_last_12m, "
        "suppressed FROM forecast WHERE level IN ('total', 'ward', 'age_band') "
        "ORDER BY level DESC, ward_name, age_band",
    )
    t = Table(
        "areas",
        "By area and age band: the next 12 months (bottom-up) and the last 12 months",
        ["Area", "Age band", "Expected (12 months)", "90% from", "90% to", "Last 12 months"],
        note="Children entering a plan or care (first entry). Expected is withheld when no risk "
        "model is promoted.",
    )
    for r in rows:
        area = "Whole county" if r["level"] != "ward" else r["ward_name"]
        band = r["age_band"] if r["level"] == "age_band" else "all"
        if r["suppressed"]:
            t.rows.append([area, band, SUPPRESSED, "", "", SUPPRESSED])
            continue
        t.rows.append(
            [area, band, _r(r["expected"]), _r(r["lower"], 0), _r(r["upper"], 0),
             "" if r["observed_last_12m"] is None else int(r["observed_last_12m"])]
        )  # fmt: skip
    return t


def areas_table(snap: Snapshot) -> Table:
    rows = rm.query(
        "planners",
        "SELECT outcome, area_code, area_name, mean, lower_80, upper_80 FROM forecast_areas "
        "WHERE period = '12 months' ORDER BY outcome, area_code = 'other', area_name",
    )
    t = Table(
        "areas_top_down",
        "By area: the next 12 months, top-down (the county's forecast shared out by each area's "
        "entries in the last 36 months)",
        ["Outcome", "Area", "Expected (12 months)", "80% from", "80% to"],
        note="Wards with few entries are pooled, so no area's share rests on a handful of "
        "children.",
    )
    for r in rows:
        t.rows.append(
            [OUTCOMES[r["outcome"]], r["area_name"], _r(r["mean"]), _r(r["lower_80"], 0),
             _r(r["upper_80"], 0)]
        )  # fmt: skip
    return t


def views_rows() -> list[dict]:
    return rm.query(
        "planners",
        "SELECT outcome, top_down_12m, bottom_up_12m, heldout_origins, explanation "
        "FROM forecast_views ORDER BY outcome",
    )


TABLES = {
    "forecast": forecast_table,
    "history": history_table,
    "backtest": backtest_table,
    "care": care_table,
    "areas_top_down": areas_table,
    "areas": area_table,
}


def tables(snap: Snapshot | None = None) -> dict[str, Table]:
    snap = snap or Snapshot()
    return {name: make(snap) for name, make in TABLES.items()}


# ------------------------------------------------------------------ scenarios
def scenario_inputs() -> scenarios.Inputs:
    """The published inputs of a scenario (cached per snapshot)."""
    paths = rm.frame(
        "planners",
        "paths",
        "SELECT outcome, sim, horizon, month, entries FROM forecast_paths ORDER BY outcome, sim, "
        "horizon",
    )
    out: dict[str, np.ndarray] = {}
    for outcome, g in paths.groupby("outcome"):
        out[str(outcome)] = g.pivot(index="sim", columns="horizon", values="entries").to_numpy()
    months = pd.DatetimeIndex(sorted(pd.to_datetime(paths["month"].unique())))
    curve = rm.frame(
        "planners", "risk_curve", "SELECT top_k, expected_12m FROM risk_curve ORDER BY top_k"
    )
    flows = rm.frame(
        "planners",
        "flows",
        "SELECT placement_kind, exit_rate, entry_share, stock_now, suppressed FROM care_flows",
    )
    kinds = flows[flows["placement_kind"] != "all"]
    total = flows.loc[flows["placement_kind"] == "all", "stock_now"]
    total_now = int(total.iloc[0]) if len(total) and pd.notna(total.iloc[0]) else 0
    shown = kinds[~kinds["suppressed"].astype(bool)]
    stock_now = {str(r.placement_kind): int(r.stock_now) for r in shown.itertuples()}
    pooled = kinds[kinds["suppressed"].astype(bool)]
    if len(pooled):  # the small kinds together: all minus those shown
        stock_now[scenarios.POOLED] = max(total_now - sum(stock_now.values()), 0)
    return scenarios.Inputs(
        paths=out,
        months=months,
        risk_curve=curve if len(curve) else None,
        stock_now=stock_now,
        exit_rate=dict(zip(kinds.placement_kind, kinds.exit_rate.astype(float), strict=True)),
        entry_share=dict(zip(kinds.placement_kind, kinds.entry_share.astype(float), strict=True)),
    )  # fmt: skip


def scenario_tables(result: scenarios.Result, shown_kinds: list[str]) -> list[Table]:
    """A scenario's result as tables: cost, entries and children in care (the kinds shown and
    the total; a pooled small group is in the total only)."""
    cost = Table(
        "scenario_cost",
        "Cost over the next 12 months (GBP, 80% interval)",
        ["Item", "Baseline", "80% from", "80% to", "Scenario", "80% from", "80% to",
         "Difference", "80% from", "80% to"],
    )  # fmt: skip
    for r in result.cost.itertuples():
        cost.rows.append(
            [r.item, *(int(round(x, -3)) for x in (r.baseline, r.baseline_low, r.baseline_high,
             r.scenario, r.scenario_low, r.scenario_high, r.difference, r.difference_low,
             r.difference_high))]
        )  # fmt: skip
    entries = Table(
        "scenario_entries",
        "Entries by month: baseline and scenario (80% interval)",
        ["Outcome", "Month", "Baseline", "80% from", "80% to", "Scenario", "80% from", "80% to"],
    )
    for r in result.entries.itertuples():
        entries.rows.append(
            [OUTCOMES[r.outcome], f"{r.month:%b %Y}", _r(r.baseline), _r(r.baseline_low, 0),
             _r(r.baseline_high, 0), _r(r.scenario), _r(r.scenario_low, 0),
             _r(r.scenario_high, 0)]
        )  # fmt: skip
    stock = Table(
        "scenario_care",
        "Children in care at the month end: baseline and scenario (80% interval)",
        ["Placement", "Month", "Baseline", "80% from", "80% to", "Scenario", "80% from",
         "80% to"],
    )  # fmt: skip
    keep = set(shown_kinds) | {"total"}
    for r in result.stock.itertuples():
        if r.kind not in keep:
            continue
        stock.rows.append(
            [KIND_NAMES.get(r.kind, "All children in care" if r.kind == "total" else r.kind),
             f"{r.month:%b %Y}", _r(r.baseline), _r(r.baseline_low, 0), _r(r.baseline_high, 0),
             _r(r.scenario), _r(r.scenario_low, 0), _r(r.scenario_high, 0)]
        )  # fmt: skip
    return [cost, entries, stock]
