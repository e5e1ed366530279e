"""Publish builds three audience read models from the analytics hub, verified, all or nothing.

The fixture writes a small hub directly with DuckDB: the migrated base (`warehouse.db.connect`:
raw, quarantine, audit) plus the derived tables as the hub holds them after the linkage split
(`linked.*` without identifier encodings, `scores.*`, `reference.wards`), a model registry and
the linkage unit's quality.json.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import duckdb
import pytest

from joinedup.config import Settings
from models.forecast import FORECAST_SCHEMA
from models.score import SCORES_SCHEMA
from warehouse import publish
from warehouse.db import connect
from warehouse.read_models import AUDIENCES, analysts, engineers, planners
from warehouse.read_models.builder import MANIFEST, PublishCheckFailed, snapshot_paths
from warehouse.read_models.checks import assert_no_raw_values
from warehouse.read_models.hub import rule_texts

N_CHILDREN = 40
QUOTED_VALUE = "Smithson"  # a value a stored quarantine reason quotes: never published


def _make_hub(settings: Settings) -> None:
    tag, _ = rule_texts()[0]
    now = datetime(2026, 10, 2, 9, 0)
    with connect(settings) as con:
        con.execute(
            "INSERT INTO raw.loads VALUES "
            "('L1', 'health', 'attributes', 'health_attributes.csv', 'h1', 40, "
            "'agency,record_token', "
            " '2026-10-01', 'loaded', NULL, ?),"
            "('L2', 'health', 'events', 'health_events.csv', 'h2', 80, 'agency,event_token', "
            " '2026-10-01', 'loaded', NULL, ?)",
            [now, now],
        )
        con.execute(
            """
            INSERT INTO raw.attributes (load_id, row_number, agency, record_token, sex,
                birth_year, ethnicity, ward_code, extract_date)
            SELECT 'L1', i, 'health', md5('rec' || i), 'F', '2015', 'WHITE',
                   CASE WHEN i <= 25 THEN 'W1' ELSE 'W2' END, '2026-10-01'
            FROM range(1, 41) t(i)
            """
        )
        con.execute(
            """
            INSERT INTO raw.events (load_id, row_number, agency, event_token, record_token,
                event_month, event_type, value, extract_date)
            SELECT 'L2', i, 'health', md5('ev' || i), md5('rec' || (i % 40 + 1)),
                   '2026-0' || (i % 9 + 1), 'ae_attendance', '', '2026-10-01'
            FROM range(1, 81) t(i)
            """
        )
        con.execute(
            "INSERT INTO quarantine.rows VALUES ('L2', 81, 'health', 'events', ?, ?, ?, NULL), "
            "('L2', 82, 'health', 'events', ?, ?, ?, NULL)",
            [
                tag,
                f"health_events.csv row 81: a rule (surname={QUOTED_VALUE}) [{tag}]",
                now,
                f"{tag}; expect_made_up_rule:value",
                "health_events.csv row 82: two rules (value=13) [...]",
                now,
            ],
        )
        con.execute(
            "INSERT INTO quarantine.files (file_hash, load_id, file_name, agency, kind, reason, "
            "stored_path, quarantined_at) VALUES ('h3', 'L3', 'police_events.csv', 'police', "
            "'events', ?, NULL, ?)",
            [f"police_events.csv: a rule: failed on 2 row(s) (found {QUOTED_VALUE}, 0123)", now],
        )
        con.execute(
            "INSERT INTO audit.stage_runs VALUES ('r1', 'ingest', ?, ?, 'success', "
            "'{\"files_loaded\": 2}', NULL, 'tester')",
            [now, now],
        )
        con.execute(
            "INSERT INTO audit.validations (validation_id, load_id, target, suite_name, "
            "suite_version, success, outcome, n_rows, n_staged, n_quarantined, statistics, "
            "results, validated_at, validated_by) VALUES ('v1', 'L2', 'L2', 'health_events', "
            "'1.0.0', true, 'rows_quarantined', 82, 80, 2, '{}', '[]', ?, 'tester')",
            [now],
        )
        con.execute("INSERT INTO reference.wards VALUES ('W1', 'Northfield', 2), ('W2', 'Sud', 8)")
        con.execute(
            """
            CREATE TABLE linked.records AS
            SELECT 'health' AS agency, md5('rec' || i) AS record_token,
                   'C' || lpad(i::VARCHAR, 5, '0') AS child_id, 0.9 + i / 1000 AS match_probability_max,
                   'L1' AS load_id, i::BIGINT AS row_number
            FROM range(1, 41) t(i)
            """
        )
        con.execute(
            """
            CREATE TABLE linked.children AS
            SELECT 'C' || lpad(i::VARCHAR, 5, '0') AS child_id, 'MF'[i % 2 + 1] AS sex,
                   (2026 - (i % 17) - 1)::INTEGER AS birth_year, 'WHITE' AS ethnicity,
                   CASE WHEN i <= 25 THEN 'W1' ELSE 'W2' END AS ward_code,
                   CASE WHEN i <= 25 THEN 2 ELSE 8 END AS imd_decile, 1 AS n_records,
                   'health' AS agencies
            FROM range(1, 41) t(i)
            """
        )
        con.execute(
            """
            CREATE TABLE linked.events AS
            SELECT r.child_id, 'health' AS agency, md5('ev' || i) AS event_token,
                   md5('rec' || (i % 40 + 1)) AS record_token,
                   ('2026-0' || (i % 9 + 1) || '-01')::DATE AS event_date,
                   'ae_attendance' AS event_type, NULL::DOUBLE AS value, 'L2' AS load_id,
                   i::BIGINT AS row_number
            FROM range(1, 81) t(i)
            JOIN linked.records r ON r.record_token = md5('rec' || (i % 40 + 1))
            """
        )
        con.execute(
            """
            CREATE TABLE features.child_month AS
            SELECT child_id, DATE '2026-10-01' AS as_of, 1 AS n_events_used, NULL::INTEGER AS label,
                   'L2' AS source_loads, now() AS built_at
            FROM linked.children
            """
        )
        con.execute(f"CREATE TABLE scores.current ({SCORES_SCHEMA})")
        con.execute(
            """
            INSERT INTO scores.current
            SELECT child_id, DATE '2026-10-01', 0.001 * row_number() OVER (ORDER BY child_id),
                   (41 - row_number() OVER (ORDER BY child_id))::INTEGER, 'v1',
                   '{"up": [{"factor": "ae_injury", "text": "1 A&E visit", "contribution": 0.2}],
                     "down": [], "method": "logistic"}', 'L2', now()
            FROM linked.children
            """
        )
        con.execute(
            """
            INSERT INTO linked.link_review
            SELECT 'R' || lpad(printf('%x', i), 12, '0'), i::INTEGER, 'health',
                   'C' || lpad(i::VARCHAR, 5, '0'), 'police',
                   'C' || lpad((i + 1)::VARCHAR, 5, '0'), 0.9 + i / 100, 3.2, 'no link',
                   '{"dob": {"level": "exact", "weight": 8.8}}',
                   CASE WHEN i = 1 THEN 'accept' END, TIMESTAMP '2026-10-01 12:00:00', 'run1'
            FROM range(1, 6) t(i)
            """
        )
        con.execute(f"CREATE TABLE scores.forecast ({FORECAST_SCHEMA})")
        con.execute(
            "INSERT INTO scores.forecast VALUES "
            "('total', NULL, NULL, NULL, 12.5, 8, 17, 15, false, 150000, '2026-10-01', 'v1'),"
            "('ward', 'W1', 'Northfield', NULL, NULL, NULL, NULL, NULL, true, NULL, "
            " '2026-10-01', 'v1'),"
            "('ward', 'W2', 'Sud', NULL, NULL, NULL, NULL, NULL, true, NULL, '2026-10-01', 'v1')"
        )
    folder = settings.models_dir / "v1"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(
        json.dumps({"version": "v1", "created_at": "2026-10-02T08:00:00", "model_kind": "lr"})
    )
    gate = {"promoted": True, "reasons": [], "gate": {"version": "1"}}
    (folder / "metrics.json").write_text(
        json.dumps({"roc_auc": 0.81, "precision_at_capacity": 0.3, "gate": gate})
    )
    (settings.models_dir / "current").write_text("v1\n")
    quality = settings.outputs_dir / "linkage" / "quality.json"
    quality.parent.mkdir(parents=True, exist_ok=True)
    quality.write_text(
        json.dumps({"precision": 0.97, "recall": 0.93, "threshold": 0.95, "by_sex": {"F": 0.96}})
    )


@pytest.fixture
def hub(settings):
    _make_hub(settings)
    return settings


def _open(path):
    return duckdb.connect(str(path), read_only=True)


def _columns(con) -> list[tuple[str, str, str]]:
    return con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database()"
    ).fetchall()


def _counts(path) -> dict[str, int]:
    with _open(path) as con:
        return dict(con.execute("SELECT table_name, n_rows FROM manifest").fetchall())


def test_publish_builds_three_checked_snapshots(hub):
    legacy = hub.published_path.parent / "published.duckdb"
    legacy.write_bytes(b"an old whole-warehouse copy")
    figures = publish.run(hub)
    paths = snapshot_paths(hub)
    assert hub.published_path == paths["analysts"]
    assert all(p.exists() for p in paths.values())
    assert not legacy.exists(), "the old whole-warehouse snapshot (raw data) is removed"
    assert not list(hub.published_path.parent.glob(".*.tmp*"))
    assert set(figures["checks"].values()) == {"passed"}, figures["checks"]
    ids = set()
    for audience, path in paths.items():
        with _open(path) as con:
            ids |= {
                r[0] for r in con.execute("SELECT DISTINCT publish_id FROM manifest").fetchall()
            }
            tables = {t for _, t, _ in _columns(con)}
            documented = set(
                {"analysts": analysts, "planners": planners, "engineers": engineers}[
                    audience
                ].TABLES
            ) | {"manifest"}
            assert tables == documented
    assert ids == {figures["publish_id"]}
    with connect(hub) as con:
        audited = {
            r[0]
            for r in con.execute(
                "SELECT target FROM audit.validations WHERE target LIKE 'published_%'"
            ).fetchall()
        }
    assert audited == {
        "published_analysts",
        "published_analysts.scores",
        "published_analysts.link_review",
        "published_planners",
        "published_planners.counts",
        "published_engineers",
        "published_engineers.reasons",
    }


def test_analysts_snapshot_is_pseudonymous_child_level_only(hub):
    publish.run(hub)
    path = snapshot_paths(hub)["analysts"]
    with _open(path) as con:
        cols = _columns(con)
        assert {s for s, _, _ in cols} == {"main"}
        names = {c for _, _, c in cols}
        assert not [c for c in names if c.endswith(("_token", "_bf"))]
        assert not names & {"record_token", "event_token", "load_id", "row_number", "source_loads"}
        assert con.execute("SELECT count(*) FROM children").fetchone()[0] == N_CHILDREN
        assert con.execute("SELECT count(*) FROM timeline").fetchone()[0] == 80
        assert (
            con.execute(
                "SELECT count(*) FROM timeline WHERE match_probability IS NULL "
                "OR day(event_month) <> 1"
            ).fetchone()[0]
            == 0
        )
        assert con.execute("SELECT count(DISTINCT ward_name) FROM children").fetchone()[0] == 2
        bands = dict(con.execute("SELECT band, count(*) FROM scores GROUP BY 1").fetchall())
        assert bands == {"within_capacity": N_CHILDREN}  # capacity 50
        assert (
            con.execute("SELECT count(*) FROM scores WHERE score_change IS NOT NULL").fetchone()[0]
            == 0
        )  # first publish: nothing to compare with
        version, promoted, current = con.execute(
            "SELECT version, promoted, is_current FROM models"
        ).fetchone()
        assert (version, promoted, current) == ("v1", True, True)
        # the clerical review queue: pair ids and child ids, labels and weights, no token
        queue = con.execute("SELECT * FROM link_review ORDER BY rank").df()
        assert list(queue["rank"]) == [1, 2, 3, 4, 5]
        assert list(queue["decision"].fillna("")) == ["accept", "", "", "", ""]
        assert queue["pair_id"].str.fullmatch(r"R[0-9a-f]{12}").all()
        assert con.execute("SELECT DISTINCT schema_version FROM manifest").fetchall() == [
            ("1.3.0",)
        ]
    with connect(hub) as con:
        assert_no_raw_values(path, con)


def test_score_change_is_against_the_previous_as_of_and_survives_a_rerun(hub):
    publish.run(hub)
    with connect(hub) as con:
        con.execute("UPDATE scores.current SET as_of = DATE '2026-11-01', score = score + 0.01")
    publish.run(hub)
    publish.run(hub)  # a rerun at the same as_of keeps the change against 2026-10-01
    with _open(snapshot_paths(hub)["analysts"]) as con:
        changes = con.execute(
            "SELECT DISTINCT round(score_change, 6), previous_as_of FROM scores"
        ).fetchall()
    assert changes == [(0.01, datetime(2026, 10, 1).date())]


def test_score_history_carries_earlier_dates_and_a_rerun_replaces_its_own(hub):
    from warehouse.read_models.analysts import HISTORY_DATES

    publish.run(hub)
    with connect(hub) as con:
        con.execute("UPDATE scores.current SET as_of = DATE '2026-11-01', score = score + 0.01")
    publish.run(hub)
    with connect(hub) as con:
        con.execute("UPDATE scores.current SET score = score + 0.02")
    publish.run(hub)  # a rerun at 2026-11-01 replaces that date's scores, keeps 2026-10-01
    with _open(snapshot_paths(hub)["analysts"]) as con:
        rows = con.execute(
            "SELECT as_of, count(*), round(min(score), 6) FROM score_history GROUP BY 1 ORDER BY 1"
        ).fetchall()
        one = con.execute(
            "SELECT as_of, round(score, 6) FROM score_history WHERE child_id = 'C00001' ORDER BY 1"
        ).fetchall()
    d1, d2 = datetime(2026, 10, 1).date(), datetime(2026, 11, 1).date()
    assert rows == [(d1, N_CHILDREN, 0.001), (d2, N_CHILDREN, 0.031)]
    assert one == [(d1, 0.001), (d2, 0.031)]
    assert HISTORY_DATES == 24


def test_models_carry_their_calibration_deciles(hub):
    folder = hub.models_dir / "v1"
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["calibration_deciles"] = [
        {"bin": b, "n": 100, "positives": 1, "mean_predicted": 0.01 * b,
         "observed_rate": 0.011 * b, "deviation": 0.001, "deviation_ci": [0, 0.002]}
        for b in range(10)
    ]  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    publish.run(hub)
    for audience in ("analysts", "engineers"):
        with _open(snapshot_paths(hub)[audience]) as con:
            (raw,) = con.execute("SELECT calibration_deciles FROM models").fetchone()
        deciles = json.loads(raw)
        assert len(deciles) == 10
        assert set(deciles[3]) == {"bin", "n", "mean_predicted", "observed_rate"}
        assert deciles[3]["observed_rate"] == pytest.approx(0.033)


def test_planners_snapshot_has_no_child_id_and_no_small_count(hub):
    publish.run(hub)
    t = hub.small_number_threshold
    with _open(snapshot_paths(hub)["planners"]) as con:
        names = {c for _, _, c in _columns(con)}
        assert "child_id" not in names
        assert not [c for c in names if c.endswith(("_token", "_bf")) or c == "load_id"]
        small = con.execute(
            f"""
            SELECT count(*) FROM (
                SELECT children AS n FROM children_known UNION ALL
                SELECT children FROM activity_12m UNION ALL SELECT events FROM activity_12m
                UNION ALL SELECT observed_last_12m FROM forecast
            ) WHERE n > 0 AND n < {t}
            """
        ).fetchone()[0]
        assert small == 0
        total = con.execute("SELECT children FROM children_known WHERE level = 'total'").fetchone()[
            0
        ]
        assert total == N_CHILDREN
        # 25 and 15 children in the two wards: shown; small age-band cells suppressed
        wards = dict(
            con.execute(
                "SELECT ward_code, children FROM children_known WHERE level = 'ward'"
            ).fetchall()
        )
        assert wards == {"W1": 25, "W2": 15}
        assert (
            con.execute(
                "SELECT count(*) FROM children_known WHERE suppressed AND children IS NOT NULL"
            ).fetchone()[0]
            == 0
        )
        assert con.execute("SELECT count(*) FROM children_known WHERE suppressed").fetchone()[0]


def test_engineers_snapshot_has_no_token_no_value_and_no_raw_value(hub):
    publish.run(hub)
    path = snapshot_paths(hub)["engineers"]
    with _open(path) as con:
        names = {c for _, _, c in _columns(con)}
        assert "child_id" not in names
        assert not [c for c in names if c.endswith(("_token", "_bf"))]
        reasons = [
            r[0]
            for r in con.execute(
                "SELECT reason FROM quarantined_rows UNION ALL SELECT reason FROM quarantined_files"
            ).fetchall()
        ]
        assert len(reasons) == 3
        assert not [r for r in reasons if QUOTED_VALUE in r or "=" in r or "0123" in r]
        assert any(
            "expect_made_up_rule:value" in r for r in reasons
        )  # an unknown rule shows its tag
        assert con.execute("SELECT count(*) FROM loads").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM stage_runs").fetchone()[0] >= 1
        quality = dict(con.execute("SELECT metric, value FROM linkage_quality").fetchall())
        assert quality["precision"] == 0.97 and quality["by_sex.F"] == 0.96
    with connect(hub) as con:
        assert_no_raw_values(path, con)


def test_the_raw_value_guard_catches_a_token_even_inside_text(hub, tmp_path):
    leaky = tmp_path / "leaky.duckdb"
    with duckdb.connect(str(leaky)) as con:
        con.execute("CREATE TABLE t (note VARCHAR, other JSON)")
        con.execute(
            "INSERT INTO t VALUES ('fine', NULL), (md5('rec3'), NULL), "
            "(NULL, json_object('x', 'seen ' || md5('ev7') || ' in text'))"
        )
    with connect(hub) as con, pytest.raises(AssertionError) as err:
        assert_no_raw_values(leaky, con)
    assert "t.note: 1" in str(err.value) and "t.other: 1" in str(err.value)
    assert not re.search("[0-9a-f]{32}", str(err.value)), "the guard never quotes the value"


def _snapshot_bytes(settings) -> dict[str, bytes]:
    return {a: p.read_bytes() for a, p in snapshot_paths(settings).items()}


def test_a_failing_builder_keeps_every_old_snapshot(hub, monkeypatch):
    publish.run(hub)
    before = _snapshot_bytes(hub)

    def boom(*_args, **_kwargs):
        raise RuntimeError("planners' builder broke")

    monkeypatch.setattr(planners, "build", boom)
    with connect(hub) as con:
        con.execute("DELETE FROM scores.current WHERE rank <= 5")
    with pytest.raises(RuntimeError, match="builder broke"):
        publish.run(hub)
    assert _snapshot_bytes(hub) == before
    assert not list(hub.published_path.parent.glob(".*.tmp*"))


def test_a_raw_value_in_a_snapshot_fails_publish_and_keeps_the_old_ones(hub, monkeypatch):
    publish.run(hub)
    before = _snapshot_bytes(hub)
    real = engineers.build

    def leaky(con, settings, cat, previous=None):
        real(con, settings, cat, previous)
        con.execute(f"UPDATE {cat}.main.stage_runs SET error = (SELECT md5('rec3'))")

    monkeypatch.setattr(engineers, "build", leaky)
    with pytest.raises(PublishCheckFailed, match="stage_runs.error"):
        publish.run(hub)
    assert _snapshot_bytes(hub) == before


def test_a_failed_suite_fails_publish_and_keeps_the_old_ones(hub, monkeypatch):
    publish.run(hub)
    before = _snapshot_bytes(hub)
    real = planners.build

    def small(con, settings, cat, previous=None):
        real(con, settings, cat, previous)
        con.execute(f"UPDATE {cat}.main.activity_12m SET children = 3, suppressed = false")

    monkeypatch.setattr(planners, "build", small)
    with pytest.raises(PublishCheckFailed, match="published_planners.counts"):
        publish.run(hub)
    assert _snapshot_bytes(hub) == before
    with connect(hub) as con:
        assert (
            con.execute(
                "SELECT count(*) FROM audit.validations "
                "WHERE target = 'published_planners.counts' AND outcome = 'failed'"
            ).fetchone()[0]
            == 1
        )


def test_a_token_in_the_review_queue_fails_publish(hub):
    publish.run(hub)
    before = _snapshot_bytes(hub)
    with connect(hub) as con:
        con.execute(
            "UPDATE linked.link_review SET evidence_json = json_object('dob', json_object("
            "'level', md5('rec2'), 'weight', 1.0)) WHERE rank = 2"
        )
    with pytest.raises(PublishCheckFailed, match="link_review.evidence_json"):
        publish.run(hub)
    assert _snapshot_bytes(hub) == before


def test_a_rerun_is_idempotent(hub):
    publish.run(hub)
    first = {a: _counts(p) for a, p in snapshot_paths(hub).items()}
    publish.run(hub)
    second = {a: _counts(p) for a, p in snapshot_paths(hub).items()}
    # the engineers see the first publish's own validation rows; nothing else changes
    first["engineers"].pop("validations"), second["engineers"].pop("validations")
    assert first == second


def test_suites_and_docs_describe_exactly_the_built_tables():
    from expectations.checks import load_named_suite

    docs = (
        __import__("pathlib").Path(__file__).resolve().parent.parent / "docs" / "read-models.md"
    ).read_text(encoding="utf-8")
    modules = {"analysts": analysts, "planners": planners, "engineers": engineers}
    for audience in AUDIENCES:
        tables = dict(modules[audience].TABLES) | {"manifest": MANIFEST}
        documented = {f"{t}.{c}" for t, cols in tables.items() for c in cols}
        suite = load_named_suite(f"published_{audience}")
        (exact,) = [e for e in suite["expectations"] if e["kwargs"].get("column") == "table_column"]
        assert set(exact["kwargs"]["value_set"]) == documented, audience
        section = docs.split(f"## {audience.capitalize()}")[1].split("\n## ")[0]
        for table, cols in tables.items():
            if table == "manifest":
                continue
            assert f"### `{table}`" in section, (audience, table)
            for column in cols:
                assert f"`{column}`" in section, (audience, table, column)
