"""Care-demand backtest: rolling-origin accuracy of the top-down view against seasonal-naive.

Issue 13 targets: beat seasonal-naive at every horizon 1-12; the 80% interval covers the actual
75-85% of the time.  Reads a home's hub warehouse (read-only): the monthly entries to child
protection plans and to care (`forecast.history`), then for every origin from `--min-train`
months on, fits on the months before it and forecasts 12 (`forecast.backtest`).

    .venv/bin/python bench/bench_forecast.py --home /tmp/demo [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--min-train", type=int, default=36)
    ap.add_argument("--window", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import duckdb

    from forecast import backtest, history
    from joinedup.config import Settings

    settings = Settings.from_env(args.home)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    counts = history.monthly_counts(con, str(settings.extract_date))
    con.close()
    out: dict = {"home": str(args.home), "extract_date": str(settings.extract_date), "outcomes": {}}
    for outcome, label in history.OUTCOMES.items():
        y = history.series(counts, outcome)
        t = time.perf_counter()
        s = backtest.summary(backtest.rolling_origin(y, args.min_train, window=args.window))
        td = s[s.method == "top_down"].set_index("horizon")
        sn = s[s.method == "seasonal_naive"].set_index("horizon")
        out["outcomes"][outcome] = {
            "label": label,
            "months": len(y),
            "first_month": str(y.index[0].date()),
            "mean_per_month": round(float(y.mean()), 2),
            "seconds": round(time.perf_counter() - t, 1),
            "beats_seasonal_naive_every_horizon": bool((td["mae"] < sn["mae"]).all()),
            "coverage_80_within_75_85_every_horizon": bool(
                td["coverage_80"].between(0.75, 0.85).all()
            ),
            "by_horizon": [
                {
                    "horizon": int(h),
                    "forecasts": int(td.loc[h, "forecasts"]),
                    "top_down_mae": round(float(td.loc[h, "mae"]), 3),
                    "top_down_mase": round(float(td.loc[h, "mase"]), 3),
                    "top_down_coverage_80": round(float(td.loc[h, "coverage_80"]), 3),
                    "seasonal_naive_mae": round(float(sn.loc[h, "mae"]), 3),
                    "seasonal_naive_mase": round(float(sn.loc[h, "mase"]), 3),
                    "seasonal_naive_coverage_80": round(float(sn.loc[h, "coverage_80"]), 3),
                }
                for h in td.index
            ],
        }
    if args.json:
        print(json.dumps(out))
        return 0
    for r in out["outcomes"].values():
        print(
            f"{r['label']}: {r['months']} months from {r['first_month']}, mean {r['mean_per_month']}/month "
            f"({r['seconds']} s)"
        )
        print("  h  forecasts  top-down MAE  MASE  cover80 | seasonal-naive MAE  MASE  cover80")
        for b in r["by_horizon"]:
            print(
                f"  {b['horizon']:2d}  {b['forecasts']:9d}  {b['top_down_mae']:12.3f}  {b['top_down_mase']:4.2f}  "
                f"{b['top_down_coverage_80']:7.3f} | {b['seasonal_naive_mae']:18.3f}  "
                f"{b['seasonal_naive_mase']:4.2f}  {b['seasonal_naive_coverage_80']:7.3f}"
            )
        print(
            f"  beats seasonal-naive at every horizon: {r['beats_seasonal_naive_every_horizon']}; "
            f"80% coverage within 75-85% at every horizon: {r['coverage_80_within_75_85_every_horizon']}"
        )
    _stage_table(settings)
    return 0


def _stage_table(settings) -> None:
    """Both views as the forecast stage backtested them (`scores.forecast_backtest`): the
    bottom-up view on the risk model's held-out months, beside seasonal-naive and top-down on the
    same origins; printed as a markdown table (docs/forecast.md)."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        t = con.execute(
            "SELECT view, outcome, horizon, forecasts, mae, mase, coverage_80, baseline_mae, "
            "beats_baseline FROM scores.forecast_backtest ORDER BY outcome, horizon, view"
        ).df()
    except duckdb.CatalogException:
        print("no scores.forecast_backtest in this home: run the forecast stage first")
        return
    finally:
        con.close()
    for outcome, g in t.groupby("outcome"):
        print(f"\n{outcome}: the forecast stage's backtests (MAE / 80% coverage, forecasts)")
        views = [v for v in ("top_down", "seasonal_naive", "bottom_up", "top_down_heldout")
                 if v in set(g.view)]  # fmt: skip
        print("| horizon | " + " | ".join(views) + " |")
        print("|---" * (len(views) + 1) + "|")
        for h, gh in g.groupby("horizon"):
            cells = []
            for v in views:
                r = gh[gh.view == v].iloc[0]
                beats = r.beats_baseline
                mark = "" if pd.isna(beats) or bool(beats) else " **loses**"
                base = f" vs {r.baseline_mae:.2f}" if v in ("bottom_up", "top_down_heldout") else ""
                cells.append(f"{r.mae:.2f}{base} / {r.coverage_80:.2f} ({r.forecasts}){mark}")
            print(f"| {h} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
