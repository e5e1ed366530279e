"""A hub's forecast tables made by the forecast stage's own code from a known, seeded process:
monthly entries to plans and care (Poisson with a yearly season), split over the age bands, a
population of scores, and children in care by placement kind.  Used by the dashboard's and the
read models' tests so planner pages run on real forecasts without a whole pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast import areas, care, stage
from joinedup.config import Settings
from models.forecast import AGE_BANDS

EXTRACT = pd.Timestamp("2026-10-01")
KIND_SHARE = {"foster": 0.55, "kinship": 0.15, "residential": 0.2, "other": 0.1}


def _counts(rng: np.random.Generator, months: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = pd.date_range(end=EXTRACT - pd.DateOffset(months=1), periods=months, freq="MS")
    season = 1 + 0.2 * np.sin(2 * np.pi * (idx.month.to_numpy() - 1) / 12)
    rows, band_rows = [], []
    bands = [b for b, _, _ in AGE_BANDS]
    for outcome, level in (("cp_plan_start", 14.0), ("looked_after_start", 7.0)):
        y = rng.poisson(level * season)
        split = np.array([rng.multinomial(n, [0.35, 0.25, 0.3, 0.1]) for n in y])
        for k, m in enumerate(idx):
            rows.append({"month": m, "outcome": outcome, "children": int(y[k])})
            for j, b in enumerate(bands):
                band_rows.append(
                    {"month": m, "outcome": outcome, "age_band": b, "children": int(split[k, j])}
                )
    return pd.DataFrame(rows), pd.DataFrame(band_rows)


def _stock(rng: np.random.Generator, months: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = pd.date_range(end=EXTRACT - pd.DateOffset(months=1), periods=months, freq="MS")
    stock, exits = [], []
    now = {"foster": 80, "kinship": 22, "residential": 30, "other": 4}
    for m in idx:
        for kind in KIND_SHARE:
            out = int(rng.binomial(now[kind], 1 / 24))
            now[kind] = max(now[kind] - out + int(rng.poisson(7 * KIND_SHARE[kind])), 0)
            stock.append({"month": m, "placement_kind": kind, "children": now[kind]})
            exits.append({"month": m, "placement_kind": kind, "exits": out})
    return pd.DataFrame(stock), pd.DataFrame(exits)


def make_forecast_tables(settings: Settings, seed: int = 3, months: int = 60) -> dict:
    """Write every `forecast.tables` table for a promoted model 'v1'; returns the checks."""
    rng = np.random.default_rng(seed)
    counts, band_counts = _counts(rng, months)
    start = EXTRACT
    top, paths = stage._topdown(counts, band_counts, 400, seed)
    bands = [b for b, _, _ in AGE_BANDS]
    scores = pd.DataFrame(
        {
            "score": np.sort(rng.beta(0.3, 30, 3000))[::-1],
            "model_version": "v1",
            "age_band": rng.choice(bands, 3000),
        }
    )
    shares = {"cp_plan_start": 0.67, "looked_after_start": 0.33}
    bottom = stage._bottomup(scores, shares, start, 400, seed)
    monthly = pd.concat([top, bottom], ignore_index=True)
    summary, _ = stage._backtests(counts, seed, None)
    stock, exits = _stock(rng, months)
    months12 = pd.date_range(start, periods=12, freq="MS")
    stock_rows, flows = care.forecast_table(
        stock, exits, KIND_SHARE, paths["looked_after_start"], months12, seed
    )
    entries = pd.DataFrame(
        [
            {"outcome": o, "ward_code": w, "ward_name": name, "n": n}
            for o in ("cp_plan_start", "looked_after_start")
            for w, name, n in (("W1", "Northfield", 300), ("W2", "Sud", 120), ("W3", None, 12))
        ]
    )
    frames = {
        "scores.forecast_monthly": monthly,
        "scores.forecast_areas": areas.area_table(paths, areas.areas(entries, 30), months12, seed),
        "scores.forecast_history": stage._history(counts, band_counts),
        "scores.forecast_backtest": summary,
        "scores.forecast_paths": stage.path_rows(paths, months12),
        "scores.forecast_views": stage._views(monthly, pd.DataFrame(), None),
        "scores.risk_curve": stage._risk_curve(scores),
        "scores.care_stock": stock_rows,
        "scores.care_flows": flows,
    }
    return stage.write_tables(settings, frames, start.date())
