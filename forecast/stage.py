"""The forecast stage: both views of care demand by month, their backtests, and what scenarios
need, written to the hub's `scores.forecast_*` tables inside one checked transaction.

Owns `run` (the stage function `joinedup.stages` and the DAG call) and the tables' columns
(`TABLES`).  The stage first runs `models.forecast.run` (the 12-month bottom-up cells by ward and
age band, `scores.forecast`), then:

* **top-down** (`forecast.topdown`, never the risk model): per outcome, county-wide and by age
  band (the bands' means scaled to the county's so totals agree), 12 months with 80% and 95%
  intervals, and the county's simulated paths (`scores.forecast_paths`, what scenarios draw on);
* **bottom-up** (`forecast.bottomup`), only when a model is promoted: the calibrated scores of
  the children scored now, by month, county-wide and by age band;
* **backtests** (`forecast.backtest`, `forecast.bottomup_backtest`): rolling-origin per horizon
  for top-down and seasonal-naive; the bottom-up view on the model's held-out months, with
  seasonal-naive and top-down on the same origins; `beats_baseline` per horizon;
* **the gap between the views** on those held-out months (`scores.forecast_views`): how much of
  what happened came from children the model had scored;
* **by area** (`forecast.areas`): the county's top-down paths shared out between wards with
  enough entries to stand alone, the rest pooled, by month and for the 12 months;
* the **risk curve** (`scores.risk_curve`): the expected 12-month entries among the top k scored
  children, k in steps of 10, for the early-help scenario;
* **children in care** (`forecast.stock`): month-end stock by placement kind, observed and
  forecast (entries from the top-down paths, exits at each kind's recent monthly rate).

The stage runs when scores are withheld: the top-down view, its backtest, the stock and the
observed history do not depend on the risk model; the bottom-up rows are then absent and
`scores.forecast_views` says why.  Counts here are the hub's, unsuppressed; the planners' read
model applies disclosure control (`warehouse.read_models.planners`).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from expectations.downstream import checked_transaction
from forecast import areas, bottomup, bottomup_backtest, care, history, stock
from forecast import backtest as rolling
from forecast.tables import TABLES
from forecast.topdown import TopDown, summarise
from joinedup.config import Settings
from warehouse.db import connect

#: months of history each top-down fit uses; the first backtest origin needs `MIN_TRAIN`
WINDOW = 48
MIN_TRAIN = 36
#: entries in the fitting window below which an age band's model is a level only
SPARSE = 48
#: why the bottom-up view is missing (the models page gives the gate's reasons)
WITHHELD = "no risk model has passed the deployment gate, so there are no scores to add up"
#: a ward stands alone in the top-down view by area with at least this many times the small-number
#: threshold of entries in the last 36 months (else it joins the pooled "other wards"): every
#: share then rests on a count that could itself be published
AREA_MIN_ENTRIES = 1
#: risk-curve step (children): no two published points differ by fewer than this many children
RISK_STEP = 10

#: the tables the forecast suites check before COMMIT
CHECKED = ("scores.forecast_monthly", "scores.forecast_backtest")


def _topdown(
    counts: pd.DataFrame, band_counts: pd.DataFrame, n_sims: int, seed: int
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Top-down rows (county and age bands, reconciled) and the county paths per outcome."""
    rows, paths = [], {}
    for k, outcome in enumerate(history.OUTCOMES):
        y = history.series(counts, outcome)
        model = TopDown(window=WINDOW, n_sims=n_sims, seed=seed + k).fit(y)
        draws = model.simulate(12)
        months = model.months(12)
        paths[outcome] = draws
        total = summarise(draws, months)
        total = total.assign(outcome=outcome, level="total", age_band=None, method=_describe(model))
        rows.append(total)
        bands = band_counts[band_counts["outcome"] == outcome]
        per_band = []
        for j, band in enumerate(sorted(bands["age_band"].unique())):
            yb = bands[bands["age_band"] == band].set_index("month")["children"].astype(float)
            yb.index = pd.DatetimeIndex(yb.index, freq="MS")
            # a sparse band (fewer than SPARSE entries in the window) gets a level only: a
            # trend or season fitted on a handful of events explodes when extrapolated
            sparse = float(yb.iloc[-WINDOW:].sum()) < SPARSE
            mb = TopDown(
                window=WINDOW,
                n_sims=n_sims,
                seed=seed + 100 * (k + 1) + j,
                terms=() if sparse else None,
            ).fit(yb)
            fb = summarise(mb.simulate(12), months)
            per_band.append(
                fb.assign(outcome=outcome, level="age_band", age_band=band, method=_describe(mb))
            )
        if per_band:
            bands_df = pd.concat(per_band, ignore_index=True)
            # reconcile: scale each month's band forecasts so their means add up to the county's
            sums = bands_df.groupby("horizon")["mean"].sum()
            factor = (total.set_index("horizon")["mean"] / sums.where(sums > 0)).fillna(1.0)
            f = bands_df["horizon"].map(factor)
            for c in ["mean"] + [c for c in bands_df if c.startswith(("lower_", "upper_"))]:
                bands_df[c] = bands_df[c] * f
            rows.append(bands_df)
    return pd.concat(rows, ignore_index=True).assign(view="top_down"), paths


def _describe(model: TopDown) -> str:
    family = "negative binomial" if model.family_ == "negative_binomial" else "Poisson"
    terms = " + ".join(model.terms_) if model.terms_ else "level only"
    return f"{family} ({terms}), last {model.n_} months"


def _bottomup(
    scores: pd.DataFrame, shares: dict[str, float], start: pd.Timestamp, n_sims: int, seed: int
) -> pd.DataFrame:
    t = bottomup.table(
        scores["score"].to_numpy(), scores["age_band"].to_numpy(), shares, start, n_sims, seed
    )
    t["level"] = np.where(t["group"] == "total", "total", "age_band")
    t["age_band"] = t["group"].where(t["group"] != "total")
    version = scores["model_version"].iloc[0]
    return t.drop(columns="group").assign(
        view="bottom_up", method=f"sum of calibrated scores, model {version}"
    )


def _backtests(
    counts: pd.DataFrame, seed: int, bottom: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary rows of every view's backtest, the top-down/naive errors per origin)."""
    errs = []
    for k, outcome in enumerate(history.OUTCOMES):
        y = history.series(counts, outcome)
        e = rolling.rolling_origin(y, MIN_TRAIN, window=WINDOW, seed=seed + 1000 * (k + 1))
        errs.append(e.assign(outcome=outcome))
    errors = pd.concat(errs, ignore_index=True)
    out = [_summary(errors, errors)]
    if bottom is not None and not bottom.empty:
        same = errors[errors["origin"].isin(set(bottom["origin"]))]
        both = pd.concat([bottom, same[same.method == "seasonal_naive"]], ignore_index=True)
        out.append(_summary(bottom, both))
        # the top-down view on the same few origins, for a like-for-like comparison
        td = same[same.method == "top_down"].assign(method="top_down_heldout")
        out.append(_summary(td, both))
    return pd.concat(out, ignore_index=True), errors


def _summary(errors: pd.DataFrame, with_baseline: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, outcome), e in errors.groupby(["method", "outcome"]):
        s = rolling.summary(e).set_index("horizon")
        base = with_baseline[
            (with_baseline.method == "seasonal_naive") & (with_baseline.outcome == outcome)
        ]
        base = base[base["origin"].isin(set(e["origin"]))]
        bs = rolling.summary(base).set_index("horizon") if not base.empty else None
        for h, r in s.iterrows():
            bmae = float(bs.loc[h, "mae"]) if bs is not None and h in bs.index else np.nan
            rows.append(
                {
                    "view": method,
                    "outcome": outcome,
                    "horizon": int(h),
                    "forecasts": int(r["forecasts"]),
                    "mae": float(r["mae"]),
                    "mase": float(r["mase"]),
                    "coverage_80": float(r["coverage_80"]),
                    "baseline_mae": bmae,
                    "beats_baseline": bool(r["mae"] < bmae) if method != "seasonal_naive" else None,
                    "first_origin": e["origin"].min(),
                    "last_origin": e["origin"].max(),
                }
            )
    return pd.DataFrame(rows)


def _views(monthly: pd.DataFrame, gap: pd.DataFrame, withheld: str | None) -> pd.DataFrame:
    """Per outcome: both views' 12-month totals and why they differ, measured on the model's
    held-out months (`bottomup_backtest.backtest`'s gap)."""
    rows = []
    g_all = gap if not gap.empty else None
    first = (
        g_all.drop_duplicates("origin")["scored_children_with_entry"].sum()
        if g_all is not None
        else 0
    )
    scored_entries = g_all["actual_12m_scored"].sum() if g_all is not None else 0
    expected_first = g_all["bottom_up_12m"].sum() if g_all is not None else 0
    for outcome, label in history.OUTCOMES.items():
        tot = monthly[(monthly.outcome == outcome) & (monthly.level == "total")]
        td = float(tot.loc[tot.view == "top_down", "mean"].sum())
        bu = tot.loc[tot.view == "bottom_up", "mean"]
        bu12 = float(bu.sum()) if len(bu) else np.nan
        g = gap[gap.outcome == outcome] if g_all is not None else gap
        n = int(len(g))
        actual = float(g["actual_12m"].mean()) if n else np.nan
        share = float(g["actual_12m_scored"].sum() / max(g["actual_12m"].sum(), 1)) if n else np.nan
        hb = float(g["bottom_up_12m"].mean()) if n else np.nan
        if withheld:
            text = (
                f"Only the top-down view is shown for {label}: {withheld}. The top-down view "
                "does not depend on the risk model."
            )
        elif n:
            repeat = 1 - first / max(scored_entries, 1)
            text = (
                f"The bottom-up view expects {bu12:.0f} {label} in the next 12 months, the "
                f"top-down view {td:.0f}. On the model's {n} held-out months the bottom-up view "
                f"expected {hb:.1f} a year and {actual:.1f} happened. Why: it counts each "
                f"scored child's first entry only; {1 - share:.0%} of these entries were by "
                "children not scored at the time (not yet known to any agency, or in care), "
                f"and {repeat:.0%} of the scored children's entries (plans and care together) "
                "were a second entry in the year; and the scores summed to "
                f"{expected_first / max(first, 1):.0%} of the scored children who did have an "
                "entry (the model's calibration on months it had not seen). Plan numbers on "
                "the top-down view; the "
                "bottom-up view says who, and what early help could change."
            )
        else:
            text = (
                f"The bottom-up view expects {bu12:.0f} {label} in 12 months, the top-down view "
                f"{td:.0f}; the model's held-out months are not complete, so the gap is not "
                "measured."
            )
        rows.append(
            {
                "outcome": outcome,
                "top_down_12m": td,
                "bottom_up_12m": bu12,
                "heldout_origins": n,
                "heldout_actual_12m": actual,
                "heldout_scored_share": share,
                "heldout_bottom_up_12m": hb,
                "explanation": text,
            }
        )
    return pd.DataFrame(rows)


def _risk_curve(scores: pd.DataFrame) -> pd.DataFrame:
    p = np.sort(scores["score"].to_numpy(dtype=float))[::-1]
    ks = np.arange(RISK_STEP, len(p) + 1, RISK_STEP)
    cum = np.cumsum(p)
    return pd.DataFrame(
        {
            "top_k": ks,
            "expected_12m": cum[ks - 1],
            "model_version": scores["model_version"].iloc[0],
        }
    )


def run(settings: Settings, n_sims: int = 1000, **_: object) -> dict:
    """The forecast stage (see the module docstring)."""
    from models import forecast as cells_stage
    from models.registry import NoPromotedModelError, load_current

    t0 = time.perf_counter()
    cells = cells_stage.run(settings)
    extract = str(settings.extract_date)
    start = pd.Timestamp(extract).to_period("M").to_timestamp()
    seed = int(settings.seed)
    with connect(settings) as con:
        counts = history.monthly_counts(con, extract)
        band_counts = history.monthly_counts(con, extract, by="age_band")
        scores = con.execute(
            f"""
            SELECT s.score, s.model_version,
                   {cells_stage.age_band_sql(f"({start.year} - c.birth_year)")} AS age_band
            FROM scores.current s JOIN linked.children c USING (child_id)
            ORDER BY s.rank
            """
        ).df()
        bundle = meta = None
        withheld = None
        try:
            bundle, meta = load_current(settings)
        except NoPromotedModelError:
            withheld = WITHHELD
        if scores.empty and withheld is None:
            withheld = WITHHELD
        gap = pd.DataFrame()
        bottom_err = None
        if bundle is not None and not scores.empty:
            bottom_err, gap = bottomup_backtest.backtest(
                con, bundle, meta, counts, n_sims=max(200, n_sims // 2), seed=seed
            )
        in_care, exits = stock.monthly(con, extract)
        mix = care.entry_mix(con, extract)
        ward_entries = areas.ward_entries(con, extract)
    if counts.empty:
        raise RuntimeError("linked.events holds no entries to plans or care: nothing to forecast")

    months = pd.date_range(start, periods=12, freq="MS")
    top, paths = _topdown(counts, band_counts, n_sims, seed)
    parts = [top]
    if withheld is None:
        shares = bottomup_backtest.outcome_shares(counts, start)
        parts.append(_bottomup(scores, shares, start, n_sims, seed))
    monthly = pd.concat(parts, ignore_index=True)
    summary, _ = _backtests(counts, seed, bottom_err)
    views = _views(monthly, gap, withheld)
    curve = (
        _risk_curve(scores)
        if withheld is None
        else pd.DataFrame(columns=["top_k", "expected_12m", "model_version"])
    )
    stock_rows, flows = care.forecast_table(
        in_care, exits, mix, paths["looked_after_start"], months, seed
    )
    by_area = areas.area_table(
        paths,
        areas.areas(ward_entries, AREA_MIN_ENTRIES * int(settings.small_number_threshold)),
        months,
        seed,
    )
    frames = {
        "scores.forecast_monthly": monthly,
        "scores.forecast_areas": by_area,
        "scores.forecast_history": _history(counts, band_counts),
        "scores.forecast_backtest": summary,
        "scores.forecast_paths": path_rows(paths, months),
        "scores.forecast_views": views,
        "scores.risk_curve": curve,
        "scores.care_stock": stock_rows,
        "scores.care_flows": flows,
    }
    checks = write_tables(settings, frames, start.date())
    bt = summary[summary.view.isin(["top_down", "bottom_up"])]
    return {
        **cells,
        "monthly": {
            "months": 12,
            "views": sorted(monthly["view"].unique()),
            "top_down_12m": {
                o: round(float(v), 1)
                for o, v in zip(views.outcome, views.top_down_12m, strict=True)
            },
            "bottom_up_withheld": withheld,
            "backtest_beats_baseline_every_horizon": {
                f"{v}/{o}": bool(g["beats_baseline"].all())
                for (v, o), g in bt.groupby(["view", "outcome"])
            },
            "backtest_coverage_80_mean": {
                f"{v}/{o}": round(float(g["coverage_80"].mean()), 3)
                for (v, o), g in bt.groupby(["view", "outcome"])
            },
            "children_in_care_now": int(flows["stock_now"].sum()) if len(flows) else 0,
            "checks": checks,
        },
        "seconds": round(time.perf_counter() - t0, 2),
    }


def path_rows(paths: dict[str, np.ndarray], months: pd.DatetimeIndex) -> pd.DataFrame:
    """`scores.forecast_paths` rows: each outcome's (sims x months) simulated entries, long."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "outcome": outcome,
                    "sim": np.repeat(np.arange(d.shape[0]), d.shape[1]),
                    "horizon": np.tile(np.arange(1, d.shape[1] + 1), d.shape[0]),
                    "month": np.tile(months[: d.shape[1]], d.shape[0]),
                    "entries": d.ravel().astype(int),
                }
            )
            for outcome, d in paths.items()
        ],
        ignore_index=True,
    )


def write_tables(settings: Settings, frames: dict[str, pd.DataFrame], as_of) -> dict:
    """Replace the forecast tables with `frames` (table -> frame with `TABLES`' columns but
    `as_of`, which is set here) in one transaction, checked by the forecast suites before
    COMMIT; returns the checks' outcomes."""
    with connect(settings) as con:
        with checked_transaction(
            con, settings, list(CHECKED), "forecast.monthly_before_commit"
        ) as checks:
            for table, frame in frames.items():
                cols = [c.split()[0] for c in TABLES[table].split(", ")]
                con.execute(f"CREATE OR REPLACE TABLE {table} ({TABLES[table]})")
                con.register("forecast_frame", frame.assign(as_of=as_of)[cols])
                try:
                    con.execute(f"INSERT INTO {table} SELECT * FROM forecast_frame")
                finally:
                    con.unregister("forecast_frame")
    return checks


def _history(counts: pd.DataFrame, band_counts: pd.DataFrame) -> pd.DataFrame:
    a = counts.assign(level="total", age_band=None)
    b = band_counts.assign(level="age_band")
    return pd.concat([a, b], ignore_index=True)[
        ["outcome", "level", "age_band", "month", "children"]
    ]
