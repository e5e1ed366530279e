"""The forecast stage's hub tables and their columns, in one place: the stage writes them
(`forecast.stage`), the read models read them (`warehouse.read_models.hub.HUB_TABLES`).

Owns `TABLES` ('schema.table' -> column definitions) and `columns` (the same as a dict).
"""

from __future__ import annotations

from forecast.topdown import LEVELS

_INTERVALS = ", ".join(f"lower_{int(x * 100)} DOUBLE, upper_{int(x * 100)} DOUBLE" for x in LEVELS)
TABLES: dict[str, str] = {
    "scores.forecast_monthly": (
        "outcome VARCHAR, view VARCHAR, level VARCHAR, age_band VARCHAR, month DATE, "
        f"horizon INTEGER, mean DOUBLE, {_INTERVALS}, method VARCHAR, as_of DATE"
    ),
    "scores.forecast_areas": (
        "outcome VARCHAR, area_code VARCHAR, area_name VARCHAR, period VARCHAR, month DATE, "
        f"horizon INTEGER, mean DOUBLE, {_INTERVALS}, as_of DATE"
    ),
    "scores.forecast_history": (
        "outcome VARCHAR, level VARCHAR, age_band VARCHAR, month DATE, children INTEGER"
    ),
    "scores.forecast_backtest": (
        "view VARCHAR, outcome VARCHAR, horizon INTEGER, forecasts INTEGER, mae DOUBLE, "
        "mase DOUBLE, coverage_80 DOUBLE, baseline_mae DOUBLE, beats_baseline BOOLEAN, "
        "first_origin DATE, last_origin DATE, as_of DATE"
    ),
    "scores.forecast_paths": (
        "outcome VARCHAR, sim INTEGER, horizon INTEGER, month DATE, entries INTEGER"
    ),
    "scores.forecast_views": (
        "outcome VARCHAR, top_down_12m DOUBLE, bottom_up_12m DOUBLE, heldout_origins INTEGER, "
        "heldout_actual_12m DOUBLE, heldout_scored_share DOUBLE, heldout_bottom_up_12m DOUBLE, "
        "explanation VARCHAR, as_of DATE"
    ),
    "scores.risk_curve": "top_k INTEGER, expected_12m DOUBLE, as_of DATE, model_version VARCHAR",
    "scores.care_stock": (
        "placement_kind VARCHAR, month DATE, kind VARCHAR, children DOUBLE, "
        f"{_INTERVALS}, as_of DATE"
    ),
    "scores.care_flows": (
        "placement_kind VARCHAR, exit_rate DOUBLE, entry_share DOUBLE, stock_now INTEGER, "
        "as_of DATE"
    ),
}


def columns(table: str) -> dict[str, str]:
    """{column: type} of one forecast table."""
    return dict(c.split(" ", 1) for c in TABLES[table].split(", "))
