"""The planners' pages on a real planners' snapshot (forecast tables made by the forecast stage's
code, `tests.planning_fixture`, counts protected at publish): both views side by side with the
explanation, backtests, scenarios (levers move the figures the right way, uncertainty carried to
pounds, saved per user), CSV and Excel exports equal to what is shown, and disclosure control over
every planner output."""

from __future__ import annotations

import csv
import io

import pytest

from dashboard.models import AuditEntry, SavedScenario

pytestmark = pytest.mark.django_db

#: headings of the columns that hold counts of children in planner outputs
COUNT_HEADINGS = {"Children", "Children (happened)", "Last 12 months"}


def _rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_planning_page_shows_both_views_history_care_and_backtests(as_role):
    client, _ = as_role("planner")
    r = client.get("/planning/")
    assert r.status_code == 200
    html = r.content.decode()
    charts = r.context["charts"]
    assert [c["outcome"] for c in charts] == ["cp_plan_start", "looked_after_start"]
    for c in charts:
        assert c["has_bottom_up"] and len(c["side"]) == 12
        assert all(row["top_down"] and row["bottom_up"] for row in c["side"])
        assert "<svg" in c["svg"] and "80% and 95% intervals" in c["svg"]
    assert "Top-down" in html and "Bottom-up" in html
    assert len(r.context["views"]) == 2 and all(v["explanation"] for v in r.context["views"])
    assert "<svg" in r.context["care"]["svg"]
    backtest = r.context["tables"]["backtest"]
    views = {row[1] for row in backtest.rows}
    assert {"Top-down", "Seasonal-naive (baseline)"} <= views
    assert len(backtest.rows) == 2 * 2 * 12  # two outcomes x (top-down, baseline) x 12 horizons
    assert AuditEntry.objects.filter(action="view_planning").count() == 1


def test_a_view_that_loses_to_the_baseline_says_so(as_role):
    from dashboard.views.planners import _loses

    rows = [
        {"view": "top_down", "outcome": "looked_after_start", "horizon": h,
         "beats_baseline": h != 3}
        for h in range(1, 13)
    ]  # fmt: skip
    (text,) = _loses(rows)
    assert "loses to the seasonal-naive baseline at 1 of 12 horizons (3 months ahead)" in text
    assert _loses([{**r, "beats_baseline": True} for r in rows]) == []


def _scenario(client, **levers):
    r = client.get("/planning/scenario/", levers)
    assert r.status_code == 200, r.content[:400]
    tables = {t.name: t for t in r.context["tables"]}
    return r, tables


def _cost(tables, item="total"):
    row = next(r for r in tables["scenario_cost"].rows if r[0] == item)
    keys = ["base", "base_lo", "base_hi", "scen", "scen_lo", "scen_hi", "diff", "diff_lo",
            "diff_hi"]  # fmt: skip
    return dict(zip(keys, row[1:], strict=True))


def test_scenario_levers_move_entries_care_and_cost_the_right_way(as_role):
    client, _ = as_role("planner")
    _, same = _scenario(client)
    c = _cost(same)
    assert c["diff"] == 0 and c["base"] == c["scen"] > 0
    assert c["base_lo"] < c["base"] < c["base_hi"]  # uncertainty carried through to pounds

    _, eh = _scenario(client, early_help_k=100, risk_reduction=30)
    e = _cost(eh)
    assert e["diff"] < 0 and e["diff_hi"] <= 0 and e["base"] == c["base"]
    entries = eh["scenario_entries"].rows
    assert sum(r[5] for r in entries) < sum(r[2] for r in entries)

    _, up = _scenario(client, referral_rise=20)
    u = _cost(up)
    assert u["diff"] > 0 and u["diff_lo"] > 0
    care_rows = [r for r in up["scenario_care"].rows if r[0] == "All children in care"]
    assert len(care_rows) == 12 and care_rows[-1][5] > care_rows[-1][2]

    _, mix = _scenario(client, residential_to_foster=50)
    assert _cost(mix)["diff"] < 0

    _, dear = _scenario(client, residential_low=200000, residential_high=220000)
    assert _cost(dear)["base"] > c["base"]
    assert AuditEntry.objects.filter(action="run_scenario").count() == 5


def test_scenario_refuses_levers_out_of_range(as_role):
    client, _ = as_role("planner")
    r = client.get("/planning/scenario/", {"risk_reduction": 150})
    assert r.status_code == 200 and not r.context["tables"]
    assert r.context["form"].errors
    r = client.get("/planning/scenario/", {"foster_low": 50000, "foster_high": 10000})
    assert "foster_high" in r.context["form"].errors


def test_scenarios_are_saved_per_user(as_role, make_user, client):
    from tests.dashboard.conftest import sign_in

    client, me = as_role("planner")
    r = client.post(
        "/planning/scenario/", {"name": "Early help pilot", "early_help_k": 50,
                                "risk_reduction": 25}
    )  # fmt: skip
    assert r.status_code == 302
    saved = SavedScenario.objects.get(owner=me)
    assert saved.name == "Early help pilot" and saved.params["early_help_k"] == 50
    r = client.get("/planning/scenario/", {"saved": saved.pk})
    assert r.context["form"]["early_help_k"].value() == 50 and r.context["tables"]
    assert [s.name for s in r.context["saved"]] == ["Early help pilot"]
    other = make_user("planner", "planner2")
    sign_in(client, other)
    assert client.get("/planning/scenario/", {"saved": saved.pk}).status_code == 404
    assert list(client.get("/planning/scenario/").context["saved"]) == []
    assert AuditEntry.objects.filter(action="save_scenario", username=me.username).exists()


@pytest.mark.parametrize(
    "name", ["forecast", "history", "backtest", "care", "areas_top_down", "areas"]
)
def test_exports_hold_exactly_what_the_page_shows(as_role, name):
    from openpyxl import load_workbook

    client, _ = as_role("planner")
    shown = client.get("/planning/").context["tables"][name]
    r = client.get(f"/planning/export/{name}.csv")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = _rows(r.content)
    assert rows[0] == [shown.title] and rows[1] == shown.columns
    assert rows[2 : 2 + len(shown.rows)] == [[str(v) for v in row] for row in shown.rows]
    x = client.get(f"/planning/export/{name}.xlsx")
    ws = load_workbook(io.BytesIO(x.content)).active
    values = [list(r) for r in ws.iter_rows(min_row=3, max_row=2 + len(shown.rows),
                                              values_only=True)]  # fmt: skip
    assert values == [[None if v == "" else v for v in row] for row in shown.rows]
    assert AuditEntry.objects.filter(action="export_planning", target=name).count() == 2


def test_scenario_export_matches_the_result(as_role):
    client, _ = as_role("planner")
    levers = {"early_help_k": 40, "risk_reduction": 20}
    _, tables = _scenario(client, **levers)
    rows = _rows(client.get("/planning/export/scenario.csv", levers).content)
    cost = tables["scenario_cost"]
    assert rows[1] == cost.columns
    assert rows[2 : 2 + len(cost.rows)] == [[str(v) for v in row] for row in cost.rows]
    assert client.get("/planning/export/nothing.csv").status_code == 404
    assert client.get("/planning/export/forecast.pdf").status_code == 404


def test_no_planner_output_shows_a_count_below_the_threshold(as_role, published_home):
    """Every export (each table and the workbook of all) and the page: every count of children
    is 'suppressed', 0 or at least the threshold, and some are suppressed (the fixture has small
    numbers, so the check is not vacuous)."""
    client, _ = as_role("planner")
    t = int(published_home.small_number_threshold)
    seen, suppressed = 0, 0
    body = client.get("/planning/export/all.csv").content
    blocks, block = [], []
    for row in _rows(body):
        if not row:
            blocks.append(block)
            block = []
        else:
            block.append(row)
    blocks.append(block)
    assert len(blocks) == 6
    for _title, heading, *rows in blocks:
        for row in rows:
            for h, v in zip(heading, row, strict=False):
                if h not in COUNT_HEADINGS or v == "":
                    continue
                seen += 1
                if v == "suppressed":
                    suppressed += 1
                    continue
                assert float(v) == 0 or float(v) >= t, (h, "a small count is shown")
    assert seen > 100 and suppressed > 0
    page = client.get("/planning/").context["tables"]
    assert [r for r in page["history"].rows if r[-1] == "suppressed"]


def test_published_planner_counts_pass_the_attackers_audit(published_home):
    """The differencing check: the monthly history, the quarterly history by age band and the
    children in care, read back from the snapshot and audited together by linear programming:
    no suppressed count can be narrowed below the protection level."""
    import duckdb

    from disclosure import audit
    from warehouse.read_models.planning import published_outputs

    path = published_home.home / "warehouse" / "published_planners.duckdb"
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{path}' AS snap (READ_ONLY)")
    outputs, groups = published_outputs(con, "snap")
    assert {o.name for o in outputs} == {"history_monthly", "history_quarterly", "care_stock"}
    assert sum(int(o.frame["children"].isna().sum()) for o in outputs) > 0
    assert audit(outputs, int(published_home.small_number_threshold), groups=groups) == []
