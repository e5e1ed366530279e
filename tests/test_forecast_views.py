"""The bottom-up view, the scenarios and the planners' disclosure outputs on known inputs: the
month split keeps each child's 12-month probability, simulated counts match their expectation,
levers move the figures the right way with a paired difference, and protecting the planners'
outputs one by one leaks by differencing where protecting them together does not."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from disclosure import audit, protect
from forecast import bottomup, scenarios
from warehouse.read_models.planning import disclosure_outputs


def test_month_shares_spread_each_probability_over_the_year():
    p = np.array([0.0, 0.01, 0.2, 0.9])
    m = bottomup.month_shares(p)
    assert m.shape == (4, 12)
    assert np.allclose(m.sum(axis=1), p)
    assert (np.diff(m[2]) < 0).all()  # constant hazard: earlier months carry more


def test_simulated_counts_match_the_expected_and_the_split():
    rng = np.random.default_rng(1)
    p = rng.beta(0.5, 40, 5000)
    groups = rng.choice(["a", "b"], 5000)
    shares = {"cp_plan_start": 0.7, "looked_after_start": 0.3}
    t = bottomup.table(p, groups, shares, pd.Timestamp("2026-10-01"), n_sims=400, seed=2)
    total = t[t.group == "total"]
    assert len(total) == 24 and total["month"].nunique() == 12
    assert total["mean"].sum() == pytest.approx(p.sum(), rel=1e-9)  # exact, not simulated
    draws, outcomes, labels = bottomup.simulate(p, groups, shares, 400, seed=2)
    assert labels == ["a", "b"] and outcomes == list(shares)
    assert draws.sum(axis=(1, 2, 3)).mean() == pytest.approx(p.sum(), rel=0.03)
    share_cp = draws[:, 0].sum() / draws.sum()
    assert share_cp == pytest.approx(0.7, abs=0.02)
    again, _, _ = bottomup.simulate(p, groups, shares, 400, seed=2)
    assert np.array_equal(draws, again)  # the same seed, the same draws
    assert (total["lower_80"] <= total["upper_80"]).all()


def _inputs(curve: bool = True) -> scenarios.Inputs:
    rng = np.random.default_rng(5)
    months = pd.date_range("2026-10-01", periods=12, freq="MS")
    scores = np.sort(rng.beta(0.4, 30, 4000))[::-1]
    ks = np.arange(10, 4001, 10)
    return scenarios.Inputs(
        paths={
            "cp_plan_start": rng.poisson(12, (500, 12)),
            "looked_after_start": rng.poisson(6, (500, 12)),
        },
        months=months,
        risk_curve=pd.DataFrame({"top_k": ks, "expected_12m": np.cumsum(scores)[ks - 1]})
        if curve
        else None,
        stock_now={"foster": 70, "kinship": 15, "residential": 20, "small_groups": 6},
        exit_rate={"foster": 0.04, "kinship": 0.03, "residential": 0.05, "small_groups": 0.07},
        entry_share={"foster": 0.55, "kinship": 0.15, "residential": 0.2, "small_groups": 0.1},
    )


def _total(result: scenarios.Result) -> dict:
    return result.cost.set_index("item").loc["total"].to_dict()


def test_no_levers_is_the_baseline_and_costs_carry_uncertainty():
    r = scenarios.run(_inputs(), scenarios.Scenario(), seed=0)
    c = _total(r)
    assert c["difference"] == 0 and c["difference_low"] == 0 and c["difference_high"] == 0
    assert c["baseline_low"] < c["baseline"] < c["baseline_high"]
    care = r.stock[r.stock.kind == "total"]
    assert len(care) == 12 and (care.baseline > 0).all()
    assert set(r.stock.kind) == {"foster", "kinship", "residential", "small_groups", "total"}


def test_each_lever_moves_the_cost_the_right_way_with_a_paired_interval():
    base = scenarios.Scenario()
    eh = _total(scenarios.run(_inputs(), scenarios.Scenario(early_help_k=100,
                                                            risk_reduction=0.3)))  # fmt: skip
    assert eh["difference_high"] < 0  # early help saves, and the whole interval says so
    up = _total(scenarios.run(_inputs(), scenarios.Scenario(referral_rise=0.2)))
    assert up["difference_low"] > 0
    mix = _total(scenarios.run(_inputs(), scenarios.Scenario(residential_to_foster=0.5)))
    assert mix["difference_high"] < 0
    dear = _total(scenarios.run(_inputs(), scenarios.Scenario(costs={"foster": (60e3, 60e3)})))
    assert dear["baseline"] > _total(scenarios.run(_inputs(), base))["baseline"]
    more = _total(scenarios.run(_inputs(), scenarios.Scenario(early_help_k=400,
                                                              risk_reduction=0.3)))  # fmt: skip
    assert more["difference"] < eh["difference"]  # reaching more children averts more


def test_early_help_needs_a_risk_model():
    r = scenarios.run(_inputs(curve=False), scenarios.Scenario(early_help_k=100,
                                                               risk_reduction=0.5))  # fmt: skip
    assert _total(r)["difference"] == 0 and "no risk model is promoted" in r.notes[0]


def test_scenario_levers_are_checked():
    assert scenarios.Scenario(risk_reduction=1.5).check()
    assert scenarios.Scenario(costs={"foster": (5, 1)}).check()
    assert scenarios.Scenario(costs={"castle": (1, 2)}).check()
    assert not scenarios.Scenario(early_help_k=10, risk_reduction=0.2).check()


def _history(seed: int = 4):
    rng = np.random.default_rng(seed)
    months = pd.date_range("2023-10-01", periods=36, freq="MS")
    bands = ["0-4", "5-9", "10-15", "16-17"]
    rows = [
        {"outcome": o, "age_band": b, "month": m, "children": int(rng.poisson(lam))}
        for o, lam0 in (("cp_plan_start", 3.5), ("looked_after_start", 1.5))
        for b, lam in zip(bands, (lam0, lam0 * 0.8, lam0, lam0 * 0.3), strict=True)
        for m in months
    ]
    monthly = pd.DataFrame(rows)
    q = monthly.assign(quarter=monthly["month"].dt.to_period("Q").dt.start_time)
    quarterly = q.groupby(["outcome", "age_band", "quarter"])["children"].sum().reset_index()
    stock = pd.DataFrame(
        [
            {"placement_kind": k, "month": m, "children": int(rng.poisson(lam))}
            for k, lam in (("foster", 60), ("kinship", 6), ("residential", 14), ("other", 4))
            for m in months
        ]
    )
    return monthly, quarterly, stock


def test_planner_outputs_protected_one_by_one_leak_by_differencing_but_not_together():
    monthly, quarterly, stock = _history()
    outputs, groups = disclosure_outputs(monthly, quarterly, stock)
    # one by one: each output safe on its own, published side by side
    alone = [protect([o], 10)[0] for o in outputs[:2]]
    findings = audit(_published(outputs[:2], alone), 10, groups=groups)
    assert findings, "monthly and quarterly tables protected apart should leak by differencing"
    assert all("differs" not in f.rule for f in findings)
    # together: the attacker's LP finds nothing, and some cells are hidden
    together = protect(outputs, 10, groups=groups)
    assert audit(_published(outputs, together), 10, groups=groups) == []
    assert sum(int(f["suppressed"].sum()) for f in together) > 0
    for f in together:
        shown = f.loc[~f["suppressed"], "children"].astype(int)
        assert ((shown == 0) | (shown >= 10)).all()


def _published(outputs, frames):
    from disclosure import Output

    return [
        Output(o.name, f, o.dims, o.value, scope=dict(o.scope))
        for o, f in zip(outputs, frames, strict=True)
    ]


def test_acro_agrees_with_the_protection_of_a_planner_table():
    """ACRO's threshold rule on the microdata behind the quarterly entries to CP plans by age band
    (one row per child-month entry): every non-zero cell it flags is hidden by ours."""
    from disclosure import from_frame
    from disclosure.acro_check import compare_with_acro

    monthly, _, _ = _history(seed=9)
    care = monthly[monthly.outcome == "cp_plan_start"]
    micro = care.loc[care.index.repeat(care["children"])][["age_band", "month"]]
    micro = micro.reset_index(drop=True)
    micro["quarter"] = micro["month"].dt.to_period("Q").astype(str)
    cells = micro.groupby(["age_band", "quarter"]).size().rename("children").reset_index()
    [frame] = protect([from_frame(cells, ["age_band", "quarter"], "children", "care")], 10)
    res = compare_with_acro(micro, "age_band", "quarter", frame, "children", threshold=10)
    assert res.acro_flagged > 0 and res.agrees, res.missed
    leaky = frame.assign(suppressed=False)
    assert not compare_with_acro(micro, "age_band", "quarter", leaky, "children").agrees


def test_areas_pool_wards_with_few_entries_and_share_out_the_county():
    from forecast import areas

    entries = pd.DataFrame(
        {
            "outcome": "looked_after_start",
            "ward_code": ["A", "B", "C", "D", "E"],
            "ward_name": ["Ash", "Birch", "Cedar", "Dale", "Elm"],
            "n": [40, 12, 6, 3, 9],
        }
    )
    a = areas.areas(entries, 10)
    assert a["share"].sum() == pytest.approx(1.0)
    # C, D and E hold 18 together: pooled; B (12) stands alone
    assert list(a["area_code"]) == ["B", "A", areas.POOLED]
    a2 = areas.areas(entries.assign(n=[40, 12, 3, 3, 2]), 10)
    # the pool (8) would rest on fewer than 10: the smallest standalone ward joins it
    assert list(a2["area_code"]) == ["A", areas.POOLED]
    paths = {"looked_after_start": np.random.default_rng(0).poisson(6, (300, 12))}
    months = pd.date_range("2026-10-01", periods=12, freq="MS")
    t = areas.area_table(paths, a, months, seed=1)
    year = t[t.period == "12 months"]
    assert year["mean"].sum() == pytest.approx(paths["looked_after_start"].sum(axis=1).mean())
    assert (year["lower_80"] <= year["upper_80"]).all() and len(t) == 3 * 13


def test_a_forecast_that_breaks_its_suite_is_rolled_back(settings):
    """The forecast suites run before COMMIT: intervals out of order (or a negative count)
    roll the stage's writes back and the previous tables stay."""
    import duckdb

    from expectations.downstream import DownstreamCheckFailed
    from forecast import stage
    from tests.planning_fixture import make_forecast_tables

    checks = make_forecast_tables(settings)
    assert {c["outcome"] for c in checks.values()} == {"passed"}
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    frames = {t: con.execute(f"SELECT * FROM {t}").df() for t in stage.TABLES}
    con.close()
    before = len(frames["scores.forecast_monthly"])
    good = frames["scores.forecast_monthly"]
    out_of_order = good.copy()
    out_of_order.loc[0, "lower_80"] = out_of_order.loc[0, "upper_80"] + 5
    negative = good.copy()
    negative.loc[3, ["mean", "lower_80", "lower_95"]] = -1.0
    short = good.drop(index=good.index[-1])
    unbalanced = good.copy()
    band = unbalanced.index[unbalanced["level"] == "age_band"][0]
    unbalanced.loc[band, ["mean", "upper_80", "upper_95"]] += 50  # bands no longer add up
    for broken, rule in (
        (out_of_order, "intervals nested"),
        (negative, "no negative"),
        (short, "12 months"),
        (unbalanced, "totals consistent"),
    ):
        with pytest.raises(DownstreamCheckFailed, match=rule):
            stage.write_tables(
                settings, {**frames, "scores.forecast_monthly": broken}, date(2026, 10, 1)
            )
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert con.execute("SELECT count(*) FROM scores.forecast_monthly").fetchone()[0] == before
    con.close()
