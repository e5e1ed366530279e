"""Tests for expectations/downstream.py: GX suites on the derived tables (linked, features, scores,
forecasts) run before COMMIT, roll a bad table back, record warnings, and keep values out of the
audit layer and Data Docs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from expectations import downstream
from expectations.checks import load_named_suite
from joinedup.config import Settings
from models import features
from tests.models_fixture import county_with_features
from warehouse.db import connect, transaction


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Settings:
    """A small county with linked tables from truth and features built (checked)."""
    return county_with_features(tmp_path_factory.mktemp("downstream"), children=600, seed=5)


def _audit(settings: Settings, table: str) -> list[tuple]:
    with connect(settings, read_only=True) as con:
        return con.execute(
            "SELECT outcome, success, suite_name, suite_version, n_rows, statistics, results "
            "FROM audit.validations WHERE target = ? AND load_id IS NULL ORDER BY validated_at",
            [table],
        ).fetchall()


def test_every_derived_table_has_a_committed_versioned_suite():
    for target in downstream.TARGETS.values():
        suite = load_named_suite(target.suite)
        assert suite["meta"]["version"]
        severities = {e["meta"]["severity"] for e in suite["expectations"]}
        assert severities <= {"critical", "warning"}
        assert "critical" in severities
    assert {"linked.records", "linked.children", "linked.events", "features.child_month",
            "scores.current", "scores.forecast", "scores.forecast_monthly",
            "scores.forecast_backtest"} == set(downstream.TARGETS)  # fmt: skip


def test_features_stage_records_a_passing_check(county: Settings):
    rows = _audit(county, "features.child_month")
    assert rows, "the features stage recorded no check"
    outcome, success, suite, version, n_rows, stats, results = rows[-1]
    assert success and outcome in ("passed", "warnings")
    assert (suite, version) == ("features", load_named_suite("features")["meta"]["version"])
    with connect(county, read_only=True) as con:
        total = con.execute("SELECT count(*) FROM features.child_month").fetchall()[0][0]
        children = {r[0] for r in con.execute("SELECT child_id FROM linked.children").fetchall()}
    assert n_rows == total
    assert json.loads(stats)["baseline"]["label_rate"] > 0
    # no child id (or any other value) in the stored results
    assert not any(c in results for c in children)


def test_a_broken_features_rebuild_is_rolled_back(county: Settings, monkeypatch):
    with connect(county, read_only=True) as con:
        before = con.execute("SELECT count(*), sum(label) FROM features.child_month").fetchall()
    good_sql = features._feature_sql
    # a bug that duplicates every row and leaks a label into the scoring month
    monkeypatch.setattr(
        features,
        "_feature_sql",
        lambda: (
            f"SELECT * REPLACE (coalesce(label, 1) AS label) FROM ({good_sql()}) "
            f"UNION ALL SELECT * FROM ({good_sql()})"
        ),
    )
    with pytest.raises(downstream.DownstreamCheckFailed) as err:
        features.run(county)
    message = str(err.value)
    assert "one row per (child_id, as_of)" in message
    assert "no peeking at the unobserved future" in message
    with connect(county, read_only=True) as con:
        after = con.execute("SELECT count(*), sum(label) FROM features.child_month").fetchall()
    assert after == before, "the bad rebuild replaced the published features"
    outcome, success, *_ = _audit(county, "features.child_month")[-1]
    assert (outcome, success) == ("failed", False)


def _scores(settings: Settings, frame: pd.DataFrame) -> dict:
    """Write scores.current from `frame` and check it inside the transaction (no commit on
    failure); returns the outcome."""
    with connect(settings) as con:
        con.register("s", frame)
        try:
            with transaction(con):
                con.execute(
                    "CREATE OR REPLACE TABLE scores.current AS SELECT child_id, "
                    "CAST(as_of AS DATE) AS as_of, score, rank::INTEGER AS rank, model_version, "
                    "CAST(reasons AS JSON) AS reasons, source_loads, "
                    "now()::TIMESTAMP AS features_built_at FROM s"
                )
                outcome = downstream.check(con, settings, "scores.current")
                if outcome["success"]:
                    downstream.record(con, settings, outcome)
        finally:
            con.unregister("s")
    return outcome


def _score_frame(settings: Settings, score: float) -> pd.DataFrame:
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT child_id, as_of, source_loads FROM features.child_month WHERE as_of = ? "
            "ORDER BY child_id",
            [pd.Timestamp(settings.extract_date).date()],
        ).df()
    n = len(rows)
    return rows.assign(
        score=[score * (1 + (i % 7) / 10) for i in range(n)],
        rank=range(1, n + 1),
        model_version="test0001",
        reasons=json.dumps({"up": [], "down": [], "method": "test"}),
    )


def test_scores_suite_catches_out_of_range_and_warns_on_drift(county: Settings):
    first = _scores(county, _score_frame(county, 0.01))
    assert first["outcome"] == "passed", first
    drifted = _scores(county, _score_frame(county, 0.05))  # five times the previous mean
    assert drifted["success"] and drifted["outcome"] == "warnings"
    assert any(w.startswith("drift: the mean score") for w in drifted["warnings"])
    bad = _score_frame(county, 0.01)
    bad.loc[0, "score"] = 1.5
    bad.loc[1, "model_version"] = None
    broken = _scores(county, bad)
    assert not broken["success"]
    assert "scores are probabilities in [0, 1]" in broken["critical"]
    assert "every score carries its model version" in broken["critical"]


def _forecast(settings: Settings, cells: pd.DataFrame) -> dict:
    with connect(settings) as con:
        con.register("f", cells)
        try:
            with transaction(con):
                con.execute("CREATE OR REPLACE TABLE scores.forecast AS SELECT * FROM f")
                return downstream.check(con, settings, "scores.forecast")
        finally:
            con.unregister("f")


def _cells(small_shown: bool, lone_suppressed: bool) -> pd.DataFrame:
    t = 10
    rows = [("total", None, None, 60.0, 50.0, 70.0, 55, False)]
    for w, obs in (("W1", 30), ("W2", 25)):
        rows.append(("ward", w, None, 30.0, 24.0, 36.0, obs, False))
    rows.append(("age_band", None, "0-4", 60.0, 50.0, 70.0, 55, False))
    if small_shown:
        rows.append(("ward_age_band", "W1", "0-4", 12.0, 8.0, 16.0, t - 3, False))
    if lone_suppressed:
        rows.append(("ward_age_band", "W2", "0-4", None, None, None, None, True))
    cols = ["level", "ward_code", "age_band", "expected", "lower", "upper",
            "observed_last_12m", "suppressed"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=cols)
    frame["expected_cost"] = frame["expected"] * 1000
    return frame


def test_forecast_suite_enforces_small_number_suppression(county: Settings):
    ok = _forecast(county, _cells(False, False))
    assert ok["success"], ok
    leak = _forecast(county, _cells(True, False))
    assert any("no shown cell has a small observed count" in r for r in leak["critical"])
    recoverable = _forecast(county, _cells(False, True))
    assert any("which subtraction would reveal" in r for r in recoverable["critical"])


class _Undo(Exception):
    """Raised to roll a test's writes back."""


def test_linked_records_conservation_uniqueness_and_lineage(county: Settings):
    token = "ab" * 16
    with connect(county) as con:
        with pytest.raises(_Undo):
            with transaction(con):
                con.execute(
                    "CREATE OR REPLACE TABLE linked.records AS SELECT * FROM (VALUES "
                    "('health', ?, 'C0123456789', 'Lnone', 1, 0.99), "
                    "('health', ?, 'C0123456789', 'Lnone', 1, 0.99)) "
                    "t(agency, record_token, child_id, load_id, row_number, match_probability_max)",
                    [token, token],
                )
                outcome = downstream.check(con, county, "linked.records")
                raise _Undo
    assert not outcome["success"]
    assert "one row per (agency, record_token)" in outcome["critical"]
    assert any(r.startswith("conservation across stages") for r in outcome["critical"])
    assert any(r.startswith("lineage: every linked record") for r in outcome["critical"])
    assert token not in json.dumps(outcome["results"])


def test_data_docs_show_the_derived_table_results(county: Settings):
    index = downstream.build_docs(county)
    docs = county.outputs_dir / "validation" / "data_docs"
    assert index.endswith("index.html")
    pages = [p.read_text(errors="ignore") for p in docs.rglob("*.html")]
    assert any("features" in p for p in pages)
    with connect(county, read_only=True) as con:
        some_child = con.execute("SELECT child_id FROM linked.children LIMIT 1").fetchall()[0][0]
    assert not any(some_child in p for p in pages)
