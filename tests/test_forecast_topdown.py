"""The top-down care-demand view (issue 13, first part): monthly histories from the hub, the count
model and its intervals, the seasonal-naive baseline and rolling-origin backtests, on series with
known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast import backtest, history
from forecast.topdown import TopDown, seasonal_naive


def _series(values, start="2019-01-01") -> pd.Series:
    idx = pd.date_range(start, periods=len(values), freq="MS")
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def test_monthly_counts_are_children_per_complete_month_zero_filled(settings):
    from warehouse.db import connect

    with connect(settings) as con:
        con.execute(
            "CREATE OR REPLACE TABLE linked.children AS SELECT * FROM (VALUES "
            "('C1', 2015), ('C2', 2012), ('C3', 2020)) t(child_id, birth_year)"
        )
        con.execute(
            "CREATE OR REPLACE TABLE linked.events AS SELECT * FROM (VALUES "
            "('C1', DATE '2026-01-03', 'cp_plan_start'), ('C1', DATE '2026-01-20', 'cp_plan_start'),"
            "('C2', DATE '2026-01-09', 'cp_plan_start'), ('C2', DATE '2026-03-01', 'looked_after_start'),"
            "('C3', DATE '2026-02-11', 'referral'), ('C3', DATE '2026-04-02', 'cp_plan_start')"
            ") t(child_id, event_date, event_type)"
        )
        counts = history.monthly_counts(con, "2026-04-15")
        by_age = history.monthly_counts(con, "2026-04-15", by="age_band")
    cp = history.series(counts, "cp_plan_start")
    assert cp.index.tolist() == list(pd.date_range("2026-01-01", "2026-03-01", freq="MS"))
    assert cp.tolist() == [2, 0, 0], "distinct children; the extract month is incomplete"
    assert history.series(counts, "looked_after_start").tolist() == [0, 0, 1]
    jan = by_age[(by_age.month == "2026-01-01") & (by_age.outcome == "cp_plan_start")]
    assert dict(zip(jan.age_band, jan.children, strict=True)) == {"10-15": 2}
    with pytest.raises(ValueError):
        history.monthly_counts(con, "2026-04-15", by="ward")


def test_seasonal_naive_repeats_last_year():
    y = _series(np.arange(24))
    f = seasonal_naive(y, 12)
    assert f["mean"].tolist() == list(range(12, 24))
    assert (f["lower_80"] <= f["mean"]).all() and (f["upper_80"] >= f["mean"]).all()


def test_the_model_finds_a_trend_and_its_intervals_widen():
    rng = np.random.default_rng(3)
    y = _series(rng.poisson(np.linspace(5, 25, 60)))
    m = TopDown(window=48).fit(y)
    assert "trend" in m.terms_
    f = m.forecast(12)
    assert f["mean"].iloc[-1] > f["mean"].iloc[0] > 20
    width = f["upper_80"] - f["lower_80"]
    assert width.iloc[-1] >= width.iloc[0]
    assert (f["lower_95"] <= f["lower_80"]).all() and (f["upper_80"] <= f["upper_95"]).all()
    assert (f["lower_80"] >= 0).all()


def test_the_same_seed_gives_the_same_forecast():
    y = _series(np.random.default_rng(1).poisson(8, 60))
    a = TopDown(seed=5).fit(y).forecast(12)
    b = TopDown(seed=5).fit(y).forecast(12)
    pd.testing.assert_frame_equal(a, b)


def test_backtest_on_a_known_process_beats_seasonal_naive_and_covers_about_80_percent():
    """A stationary overdispersed monthly count (mean 10) like the synthetic county's entries to
    child protection plans: the count model must beat the baseline at every horizon, and its 80%
    interval must cover the actual between 70% and 92% of the time (counts are discrete, so the
    inclusive interval holds a little more than 80%)."""
    rng = np.random.default_rng(11)
    lam = rng.gamma(20, 10 / 20, 90)
    y = _series(rng.poisson(lam))
    s = backtest.summary(backtest.rolling_origin(y, min_train=36))
    td = s[s.method == "top_down"].set_index("horizon")
    sn = s[s.method == "seasonal_naive"].set_index("horizon")
    assert list(td.index) == list(range(1, 13))
    assert (td["mae"] < sn["mae"]).all()
    assert (td["mase"] < sn["mase"]).all()
    assert td["coverage_80"].between(0.70, 0.92).all(), td["coverage_80"].tolist()
    assert td.loc[1, "forecasts"] == 90 - 36 and td.loc[12, "forecasts"] == 90 - 36 - 11


def test_count_interval_is_the_narrowest_central_one_holding_the_level():
    from forecast.topdown import count_interval

    draws = np.random.default_rng(0).poisson(4, 200_000)
    lo, hi = count_interval(draws, 0.8)
    held = np.mean((draws >= lo) & (draws <= hi))
    assert held >= 0.8
    plain = (
        np.quantile(draws, 0.1, method="inverted_cdf"),
        np.quantile(draws, 0.9, method="inverted_cdf"),
    )
    assert hi - lo <= plain[1] - plain[0]
    # one step narrower on either side would hold less than the level
    assert (
        np.mean((draws >= lo + 1) & (draws <= hi)) < 0.8
        or np.mean((draws >= lo) & (draws <= hi - 1)) < 0.8
    )
