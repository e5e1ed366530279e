"""Rolling-origin backtests of the top-down view and the seasonal-naive baseline.

Owns `rolling_origin` (every origin from `min_train` months of history on: fit on the months
before it, forecast the next 12, keep each forecast's error against what happened) and `summary`
(per method and horizon 1-12: MAE, MASE, 80% interval coverage and how many forecasts).

MASE scales each error by the mean absolute year-on-year change of the history the forecast was
fitted on (the seasonal-naive in-sample error), so MASE < 1 means better than that baseline's
typical in-sample error, and the comparison with the baseline's own out-of-sample MASE is direct.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.topdown import TopDown, seasonal_naive

HORIZON = 12


def rolling_origin(
    y: pd.Series,
    min_train: int = 36,
    horizon: int = HORIZON,
    window: int = 48,
    seed: int = 0,
    terms: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """One row per (method, origin, horizon) with the forecast, its 80% interval and the actual."""
    rows = []
    values = y.to_numpy()
    for origin in range(min_train, len(y)):
        train = y.iloc[:origin]
        scale = mase_scale(train.to_numpy())
        h = min(horizon, len(y) - origin)
        forecasts = {
            "top_down": TopDown(window=window, terms=terms, seed=seed + origin)
            .fit(train)
            .forecast(h),
            "seasonal_naive": seasonal_naive(train, h),
        }
        start = train.index[-1] + pd.offsets.MonthBegin(1)
        for method, f in forecasts.items():
            for r in f.itertuples():
                rows.append(error_row(method, start, r, values[origin + r.horizon - 1], scale))
    return pd.DataFrame(rows)


def mase_scale(history: np.ndarray) -> float:
    """The MASE scale of a monthly history: its mean absolute year-on-year change (0.0 with a
    year or less)."""
    v = np.asarray(history, dtype=float)
    return float(np.mean(np.abs(v[12:] - v[:-12]))) if len(v) > 12 else 0.0


def error_row(method: str, origin: pd.Timestamp, r, actual: float, scale: float) -> dict:
    """One scored forecast: `r` has horizon, mean, lower_80 and upper_80; `scale` is the MASE
    scale of the history it was fitted on."""
    return {
        "method": method,
        "origin": origin,
        "horizon": r.horizon,
        "forecast": r.mean,
        "lower_80": r.lower_80,
        "upper_80": r.upper_80,
        "actual": actual,
        "abs_error": abs(actual - r.mean),
        "scaled_error": abs(actual - r.mean) / scale if scale > 0 else np.nan,
        "covered_80": r.lower_80 <= actual <= r.upper_80,
    }


def summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per method and horizon: forecasts, MAE, MASE and 80% interval coverage."""
    g = errors.groupby(["method", "horizon"])
    return pd.DataFrame(
        {
            "forecasts": g.size(),
            "mae": g["abs_error"].mean(),
            "mase": g["scaled_error"].mean(),
            "coverage_80": g["covered_80"].mean(),
        }
    ).reset_index()
