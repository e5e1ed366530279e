"""Tests for the validate stage (expectations/): suites, staging, quarantine, conservation, audit,
idempotence and Data Docs.  Raw rows are inserted directly; tokens are random 32-hex strings.
Contract v2: people files are validated at the linkage unit (its own store, suites' results and
Data Docs), attributes and events files at the hub.  Reasons never quote a received value."""

from __future__ import annotations

import json
import secrets
from datetime import datetime

import pytest

from expectations import validate
from expectations.checks import (
    DERIVED_COLUMNS,
    VOLUME_RATIO_MAX,
    VOLUME_RATIO_MIN,
    derive,
    load_suite,
    real_date,
)
from joinedup import contract
from joinedup.config import Settings
from warehouse.db import connect

EXTRACT = "2026-10-01"


def tok(n: int = 32) -> str:
    return secrets.token_hex(n // 2)


def person(**over) -> dict:
    row = {c: None for c in contract.PEOPLE_COLUMNS}
    row.update(
        agency="health",
        record_token=tok(),
        first_name_bf=tok(contract.BLOOM_HEX_LENGTH),
        surname_bf=tok(contract.BLOOM_HEX_LENGTH),
        dob_token=tok(),
        dob_swap_token=tok(),
        birth_year_month="2015-06",
        sex="F",
        postcode_token=tok(),
        postcode_sector="LS6 2",
        nhs_token=tok(),
        upn_token="",
        extract_date=EXTRACT,
    )
    row.update(over)
    return row


def attribute(record_token: str | None = None, **over) -> dict:
    row = {
        "agency": "health",
        "record_token": record_token or tok(),
        "sex": "F",
        "birth_year": "2015",
        "ethnicity": "WHITE",
        "ward_code": "W900001",
        "extract_date": EXTRACT,
    }
    row.update(over)
    return row


def attributes_for(people: list[dict]) -> list[dict]:
    """The hub's attributes rows of the same records (same agency, record token, sex)."""
    return [attribute(p["record_token"], agency=p["agency"], sex=p["sex"]) for p in people]


def event(record_token: str, **over) -> dict:
    row = {
        "agency": "health",
        "event_token": tok(),
        "record_token": record_token,
        "event_month": "2024-03",
        "event_type": "ae_attendance",
        "value": "",
        "extract_date": EXTRACT,
    }
    row.update(over)
    return row


def add_load(
    con, load_id: str, agency: str, kind: str, rows: list[dict], header=None, extract=EXTRACT
) -> None:
    cols = contract.columns_for(kind)
    header = list(cols) if header is None else header
    con.execute(
        "INSERT INTO raw.loads (load_id, agency, kind, file_name, file_hash, n_rows, header, "
        "extract_date, status, reason, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'loaded', NULL, ?)",
        [
            load_id,
            agency,
            kind,
            contract.file_name(agency, kind),
            tok(64),
            len(rows),
            ",".join(header),
            extract,
            datetime.now(),
        ],
    )
    for i, r in enumerate(rows, start=1):
        values = [r.get(c) if c in header else None for c in cols]
        con.execute(
            f"INSERT INTO raw.{kind} (load_id, row_number, {', '.join(cols)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in cols)})",
            [load_id, i, *values],
        )


@pytest.fixture()
def settings(tmp_path):
    return Settings.from_env(tmp_path)


@pytest.fixture()
def linkage(settings):
    """The linkage unit's settings: people files are validated there."""
    return settings.for_unit("linkage")


def people_rows(n: int = 6) -> list[dict]:
    return [person(sex="F" if i % 2 else "M") for i in range(n)]


def counts(con, load_id: str) -> tuple[int, int]:
    kind = con.execute("SELECT kind FROM raw.loads WHERE load_id = ?", [load_id]).fetchone()[0]
    staged = con.execute(
        f"SELECT count(*) FROM staging.{kind} WHERE load_id = ?", [load_id]
    ).fetchone()[0]
    quarantined = con.execute(
        "SELECT count(*) FROM quarantine.rows WHERE load_id = ?", [load_id]
    ).fetchone()[0]
    return staged, quarantined


def test_suites_cover_every_agency_and_kind():
    for agency in contract.AGENCIES:
        for kind in contract.KINDS:
            suite = load_suite(agency, kind)
            assert suite["meta"]["version"]
            assert tuple(suite["meta"]["derived_columns"]) == DERIVED_COLUMNS[kind]
            assert suite["meta"]["contract_columns"] == list(contract.columns_for(kind))
            for e in suite["expectations"]:
                assert e["meta"]["severity"] in ("critical", "row", "warning")
                assert e["meta"]["rule"]


def test_event_suites_follow_the_contract():
    """The allowed event types, the value-required rule and the coded values come from the
    contract (EVENT_TYPES, VALUED_EVENT_TYPES, CODED_EVENT_VALUES)."""
    for agency in contract.AGENCIES:
        by_column = {}
        for e in load_suite(agency, "events")["expectations"]:
            by_column.setdefault(e["kwargs"].get("column"), []).append(e)
        types = [
            e for e in by_column["event_type"] if e["type"] == "expect_column_values_to_be_in_set"
        ]
        assert len(types) == 1
        assert types[0]["kwargs"]["value_set"] == list(contract.EVENT_TYPES[agency])
        valued = [t for t in contract.EVENT_TYPES[agency] if t in contract.VALUED_EVENT_TYPES]
        required = by_column.get("value_present_if_required", [])
        assert len(required) == (1 if valued else 0)
        if valued:
            assert required[0]["kwargs"]["value_set"] == [True]
            assert required[0]["meta"]["rule"].endswith(", ".join(valued))
        coded = [t for t in contract.EVENT_TYPES[agency] if t in contract.CODED_EVENT_VALUES]
        assert len(by_column.get("value_in_codes", [])) == (1 if coded else 0)
        for t in coded:
            rule = by_column["value_in_codes"][0]["meta"]["rule"]
            assert t in rule
            assert all(f"{c} {n}" in rule for c, n in contract.PLACEMENT_KINDS.items())


def test_placement_start_value_must_be_a_kind_code(settings, linkage):
    people = [person(agency="csc") for _ in range(2)]
    rec = people[0]["record_token"]
    rows = [
        ("looked_after_start", ""),  # row 1 ok
        ("placement_start", "1"),  # row 2 ok
        ("placement_start", "4.0"),  # row 3 ok (a number equal to a code)
        ("placement_start", "7"),  # row 4: not a code
        ("placement_start", "2.5"),  # row 5: not a code
        ("placement_start", ""),  # row 6: value missing
        ("looked_after_end", ""),  # row 7 ok
        ("placement_start", "3"),  # row 8 ok
    ]
    events = [event(rec, agency="csc", event_type=t, value=v) for t, v in rows]
    with connect(linkage) as con:
        add_load(con, "LP", "csc", "people", people)
    with connect(settings) as con:
        add_load(con, "LA", "csc", "attributes", attributes_for(people))
        add_load(con, "LE", "csc", "events", events)
    validate.run(linkage)
    validate.run(settings)
    with connect(settings) as con:
        q = dict(
            con.execute(
                "SELECT row_number, rules || ' || ' || reason FROM quarantine.rows "
                "WHERE load_id = 'LE'"
            ).fetchall()
        )
        staged = con.execute(
            "SELECT event_type, value FROM staging.events WHERE load_id = 'LE' ORDER BY row_number"
        ).fetchall()
    assert set(q) == {4, 5, 6}
    for row in (4, 5):
        assert "expect_column_values_to_be_in_set:value_in_codes" in q[row]
        assert f"csc_events.csv row {row}: placement_start value must be a placement kind" in q[row]
    assert "value_present_if_required" in q[6]
    assert staged == [
        ("looked_after_start", None),
        ("placement_start", 1.0),
        ("placement_start", 4.0),
        ("looked_after_end", None),
        ("placement_start", 3.0),
    ]


def test_real_date_check():
    import pandas as pd

    got = real_date(pd.Series(["2021-02-30", "2024-02-29", "2023-02-29", "2021-13-01", None, "x"]))
    assert list(got) == [False, True, False, False, None, None]


def test_clean_batches_stage_every_row_and_rerun_is_a_noop(settings, linkage):
    people = people_rows()
    attributes = attributes_for(people)
    events = [event(p["record_token"]) for p in people for _ in range(3)]
    events[0].update(event_type="gp_registration")
    with connect(settings) as con:
        add_load(con, "LA", "health", "attributes", attributes)
        add_load(con, "LE", "health", "events", events)
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people)
    figures = validate.run(settings)
    assert figures["batches_validated"] == 2
    assert figures["rows_quarantined"] == 0
    assert figures["rows_staged"] == len(attributes) + len(events)
    lfigures = validate.run(linkage)
    assert lfigures["batches_validated"] == 1
    assert lfigures["rows_quarantined"] == 0 and lfigures["rows_staged"] == len(people)
    with connect(linkage) as con:
        assert counts(con, "LP") == (6, 0)
        assert con.execute(
            "SELECT upn_token FROM staging.people WHERE load_id = 'LP' AND row_number = 1"
        ).fetchone() == (None,)
        outcome = con.execute("SELECT outcome FROM audit.validations").fetchone()[0]
    assert outcome in ("passed", "warnings")
    with connect(settings) as con:
        assert counts(con, "LA") == (6, 0)
        assert counts(con, "LE") == (18, 0)
        row = con.execute(
            "SELECT event_date, value, extract_date FROM staging.events WHERE load_id = 'LE' "
            "AND row_number = 1"
        ).fetchone()
        # event months are staged as the first day of the month
        assert str(row[0]) == "2024-03-01" and row[1] is None and str(row[2]) == EXTRACT
        assert con.execute(
            "SELECT birth_year FROM staging.attributes WHERE load_id = 'LA' AND row_number = 1"
        ).fetchone() == (2015,)
        audit = con.execute(
            "SELECT load_id, suite_name, suite_version, outcome, n_rows, n_staged, n_quarantined, "
            "validated_by, statistics, results FROM audit.validations ORDER BY load_id"
        ).fetchall()
        before = con.execute(
            "SELECT (SELECT count(*) FROM staging.events), (SELECT count(*) FROM audit.validations)"
        ).fetchone()
    assert [a[0] for a in audit] == ["LA", "LE"]
    assert audit[1][1] == "health_events"
    assert audit[1][2] == load_suite("health", "events")["meta"]["version"]
    assert audit[0][1] == "health_attributes" and audit[0][2] == "2.0.0"
    assert audit[0][3] in ("passed", "warnings")
    assert audit[1][4:7] == (18, 18, 0)
    assert audit[1][7]
    stats = json.loads(audit[1][8])
    assert stats["conservation_ok"] and stats["rows_in"] == 18
    assert stats["people_load_for_integrity"] == "LA"
    results = json.loads(audit[1][9])
    assert set(results[0]) == {
        "expectation_type",
        "column",
        "rule",
        "severity",
        "success",
        "unexpected_count",
    }

    again = validate.run(settings)
    assert again["batches_validated"] == 0
    assert validate.run(linkage)["batches_validated"] == 0
    with connect(settings) as con:
        after = con.execute(
            "SELECT (SELECT count(*) FROM staging.events), (SELECT count(*) FROM audit.validations)"
        ).fetchone()
    assert after == before


def test_volume_and_freshness_against_the_previous_batch_are_warnings(linkage):
    first = people_rows(10)
    with connect(linkage) as con:
        add_load(con, "P1", "health", "people", first)
    assert validate.run(linkage)["loads"][0]["outcome"] in ("passed", "warnings")
    # a later extract with under half the rows: suspicious, recorded, nothing lost
    with connect(linkage) as con:
        add_load(con, "P2", "health", "people", people_rows(4), extract="2026-11-01")
        con.execute("UPDATE raw.people SET extract_date = '2026-11-01' WHERE load_id = 'P2'")
    second = validate.run(linkage)["loads"][0]
    assert second["outcome"] == "warnings" and second["staged"] == 4
    # an older extract than the previous accepted one
    old = [person(extract_date="2026-09-01") for _ in range(8)]
    with connect(linkage) as con:
        add_load(con, "P3", "health", "people", old, extract="2026-09-01")
    third = validate.run(linkage)["loads"][0]
    assert third["outcome"] == "warnings" and third["staged"] == 8
    with connect(linkage) as con:
        stats = {
            load: json.loads(s)["warnings"]
            for load, s in con.execute(
                "SELECT load_id, statistics FROM audit.validations"
            ).fetchall()
        }
    assert "expect_column_values_to_be_between:batch_volume_ratio" in stats["P2"]
    assert "expect_column_values_to_be_in_set:extract_not_before_previous" in stats["P3"]
    assert not any("batch_volume_ratio" in w or "previous" in w for w in stats["P1"])
    for kind in contract.KINDS:
        suite = load_suite("health", kind)
        bounds = [
            (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
            for e in suite["expectations"]
            if e["kwargs"].get("column") == "batch_volume_ratio"
        ]
        assert bounds == [(VOLUME_RATIO_MIN, VOLUME_RATIO_MAX)]


def test_volume_warning_on_the_hubs_attributes(settings):
    with connect(settings) as con:
        add_load(con, "A1", "health", "attributes", [attribute() for _ in range(10)])
    assert validate.run(settings)["loads"][0]["outcome"] in ("passed", "warnings")
    later = [attribute(extract_date="2026-11-01") for _ in range(4)]
    with connect(settings) as con:
        add_load(con, "A2", "health", "attributes", later, extract="2026-11-01")
    second = validate.run(settings)["loads"][0]
    assert second["outcome"] == "warnings" and second["staged"] == 4
    with connect(settings) as con:
        stats = json.loads(
            con.execute("SELECT statistics FROM audit.validations WHERE load_id = 'A2'").fetchone()[
                0
            ]
        )
    assert "expect_column_values_to_be_between:batch_volume_ratio" in stats["warnings"]


def test_missing_column_quarantines_the_whole_batch(linkage):
    people = people_rows(4)
    header = [c for c in contract.PEOPLE_COLUMNS if c != "sex"]
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people, header=header)
    figures = validate.run(linkage)
    assert figures["batches_quarantined"] == 1
    with connect(linkage) as con:
        assert counts(con, "LP") == (0, 4)
        reason = con.execute("SELECT reason FROM quarantine.files WHERE load_id = 'LP'").fetchone()[
            0
        ]
        rows = con.execute(
            "SELECT rules, reason FROM quarantine.rows WHERE load_id = 'LP' ORDER BY row_number"
        ).fetchall()
        status = con.execute("SELECT status FROM raw.loads WHERE load_id = 'LP'").fetchone()[0]
        outcome = con.execute("SELECT outcome FROM audit.validations").fetchone()[0]
    assert "health_people.csv" in reason and "missing column(s) sex" in reason
    assert rows[0][0] == "expect_table_columns_to_match_set"
    assert rows[0][1].startswith("health_people.csv row 1: batch quarantined")
    assert status == "loaded" and outcome == "batch_quarantined"


def test_wrong_agency_is_critical(linkage):
    people = people_rows(3)
    people[1]["agency"] = "police"
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people)
    validate.run(linkage)
    with connect(linkage) as con:
        assert counts(con, "LP") == (0, 3)
        reason = con.execute("SELECT reason FROM quarantine.files").fetchone()[0]
        row2 = con.execute(
            "SELECT rules, reason FROM quarantine.rows WHERE load_id = 'LP' AND row_number = 2"
        ).fetchone()
    # the reason names the file, the rule and how many rows; never the value received
    assert "health_people.csv" in reason and "agency must be 'health'" in reason
    assert "on 1 row(s)" in reason
    assert "police" not in reason
    assert row2[0] == "expect_column_values_to_be_in_set:agency"
    assert row2[1].startswith("health_people.csv row 2: batch quarantined")
    assert "agency must be 'health'" in row2[1] and "police" not in row2[1]


def test_bad_rows_are_quarantined_with_their_rules_and_the_rest_staged(settings, linkage):
    people = [person(agency="education", upn_token=tok(), sex="FM"[i % 2]) for i in range(6)]
    people.append(dict(people[0]))  # duplicate record_token: row 7
    people.append(person(agency="education", birth_year_month="1980-01"))  # row 8: too old
    attributes = attributes_for(people[:6])
    attributes.append(dict(attributes[0]))  # duplicate record_token: row 7
    attributes.append(attribute(agency="education", birth_year="1980"))  # row 8: too old
    attributes.append(attribute(agency="education", sex="X"))  # row 9: unknown sex
    attributes.append(attribute(agency="education", ethnicity="Klingon"))  # row 10
    rec = people[0]["record_token"]
    base = {"agency": "education", "event_type": "suspension"}
    events = [event(rec, **base) for _ in range(10)]
    events[1].update(event_month="2021-13")  # row 2
    events[2].update(event_type="arrest")  # row 3
    events[3].update(event_type="attendance", value="140")  # row 4
    events[4].update(event_type="attendance", value="95.5")  # row 5 ok
    events[5].update(event_token=events[0]["event_token"])  # row 6 duplicate of row 1
    events[6].update(record_token=tok())  # row 7 orphan
    events[7].update(event_month="2027-01")  # row 8 after extract
    events[8].update(event_type="attendance", value="")  # row 9 value missing
    with connect(linkage) as con:
        add_load(con, "LP", "education", "people", people)
    with connect(settings) as con:
        add_load(con, "LA", "education", "attributes", attributes)
        add_load(con, "LE", "education", "events", events)
    validate.run(linkage)
    validate.run(settings)
    with connect(linkage) as con:
        assert counts(con, "LP") == (6, 2)
        qp = dict(
            con.execute(
                "SELECT row_number, rules FROM quarantine.rows WHERE load_id = 'LP'"
            ).fetchall()
        )
        qp_reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine.rows").fetchall()]
    with connect(settings) as con:
        assert counts(con, "LA") == (6, 4)
        assert counts(con, "LE") == (3, 7)
        q = dict(
            con.execute(
                "SELECT row_number, rules || ' || ' || reason FROM quarantine.rows "
                "WHERE load_id = 'LE'"
            ).fetchall()
        )
        qa = dict(
            con.execute(
                "SELECT row_number, rules || ' || ' || reason FROM quarantine.rows "
                "WHERE load_id = 'LA'"
            ).fetchall()
        )
        value = con.execute(
            "SELECT value FROM staging.events WHERE load_id = 'LE' AND row_number = 5"
        ).fetchone()[0]
        outcome = con.execute(
            "SELECT outcome FROM audit.validations WHERE load_id = 'LE'"
        ).fetchone()[0]
    assert value == 95.5 and outcome == "rows_quarantined"
    assert set(q) == {2, 3, 4, 6, 7, 8, 9}
    assert "expect_column_values_to_be_in_set:event_month_is_real_month" in q[2]
    # the reason names the file, the row and the rule, and never quotes the value received
    assert "education_events.csv row 2: event_month must be a real month" in q[2]
    assert "2021-13" not in q[2]
    assert "expect_column_values_to_be_in_set:event_type" in q[3]
    assert "education_events.csv row 3: event_type must be one of" in q[3]
    assert "arrest" not in q[3]
    assert "expect_column_values_to_be_between:attendance_value" in q[4]
    assert "education_events.csv row 4: attendance value must be" in q[4]
    assert "140" not in q[4] and "value=" not in q[4]
    assert "event_token_first_occurrence" in q[6]
    assert "record_token_in_attributes" in q[7]
    assert "event_month_not_after_extract" in q[8] and "2027" not in q[8]
    assert "value_present_if_required" in q[9]
    assert "record_token_first_occurrence" in qp[7]
    assert "birth_year_month_plausible" in qp[8]
    assert set(qa) == {7, 8, 9, 10}
    assert "record_token_first_occurrence" in qa[7]
    assert "birth_year_plausible" in qa[8] and "1980" not in qa[8]
    assert "expect_column_values_to_be_in_set:sex" in qa[9]
    assert "education_attributes.csv row 9: sex must be one of M, F, U" in qa[9]
    assert "sex=X" not in qa[9] and "=X" not in qa[9]
    assert "expect_column_values_to_be_in_set:ethnicity" in qa[10]
    assert "education_attributes.csv row 10: ethnicity must be one of" in qa[10]
    assert "Klingon" not in qa[10]
    for text in [*q.values(), *qa.values(), *qp_reasons]:
        for r in events + people + attributes:
            for c in ("event_token", "record_token", "first_name_bf", "dob_token"):
                if r.get(c):
                    assert r[c] not in text


def test_rows_with_a_value_not_stored_are_quarantined_without_it(settings, linkage):
    """Ingest stored NULL for a value without its column's shape and recorded where in
    quarantine.scrubbed: validation quarantines the row for that (rule values_stored)."""
    people = people_rows(4)
    people[1]["nhs_token"] = None
    attributes = attributes_for(people)
    attributes[2]["ward_code"] = None
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people)
        con.execute("INSERT INTO quarantine.scrubbed VALUES ('LP', 2, 'nhs_token', 'number or id')")
    with connect(settings) as con:
        add_load(con, "LA", "health", "attributes", attributes)
        con.execute("INSERT INTO quarantine.scrubbed VALUES ('LA', 3, 'ward_code', 'name or text')")
    validate.run(linkage)
    validate.run(settings)
    for s, load_id, row, name in ((linkage, "LP", 2, "health_people.csv"),
                                  (settings, "LA", 3, "health_attributes.csv")):  # fmt: skip
        with connect(s) as con:
            assert counts(con, load_id) == (3, 1)
            rules, reason = con.execute(
                "SELECT rules, reason FROM quarantine.rows WHERE load_id = ?", [load_id]
            ).fetchone()
        assert rules == "expect_column_values_to_be_in_set:values_stored"
        assert reason.startswith(f"{name} row {row}: every value must have its column's shape")


def test_conservation_and_data_docs_hold_no_tokens(settings, linkage):
    people = people_rows(4)
    people[2]["sex"] = "X"
    people[3]["first_name_bf"] = "zz" + tok(126)
    attributes = attributes_for(people)
    events = [event(p["record_token"]) for p in people]
    events[1]["event_token"] = "NOT-A-TOKEN-" + tok()
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people)
    with connect(settings) as con:
        add_load(con, "LA", "health", "attributes", attributes)
        add_load(con, "LE", "health", "events", events)
    lfigures = validate.run(linkage)
    figures = validate.run(settings)
    with connect(linkage) as con:
        staged, quarantined = counts(con, "LP")
        assert staged + quarantined == 4 and quarantined == 2
        reason = con.execute(
            "SELECT reason FROM quarantine.rows WHERE load_id = 'LP' AND row_number = 3"
        ).fetchone()[0]
        audit = con.execute("SELECT statistics, results FROM audit.validations").fetchall()
    # the reason names the row and the rule, never the value received
    assert reason.startswith("health_people.csv row 3: ") and "sex must be one of" in reason
    assert "sex=X" not in reason and "=X" not in reason
    with connect(settings) as con:
        for load_id, n in (("LA", 4), ("LE", 4)):
            staged, quarantined = counts(con, load_id)
            assert staged + quarantined == n
        audit += con.execute("SELECT statistics, results FROM audit.validations").fetchall()
    secrets_ = {
        r[c]
        for r in people + events
        for c in ("record_token", "event_token", "first_name_bf", "dob_token", "surname_bf")
        if r.get(c)
    }
    texts = [a for row in audit for a in row]
    for unit, figs in ((settings, figures), (linkage, lfigures)):
        index = unit.outputs_dir / "validation" / "data_docs" / "index.html"
        assert figs["data_docs"] == str(index) and index.exists()
        texts += [p.read_text(errors="ignore") for p in index.parent.rglob("*.html")]
        texts += [p.read_text(errors="ignore") for p in (unit.gx_root / "gx").rglob("*.json")]
    assert linkage.outputs_dir != settings.outputs_dir
    for s in secrets_:
        for t in texts:
            assert s[:20] not in t


def test_conservation_is_an_expectation_that_rolls_a_batch_back(linkage, monkeypatch):
    people = people_rows(5)
    with connect(linkage) as con:
        add_load(con, "LP", "health", "people", people)
    real_stage = validate.stage_rows

    def lose_a_row(con, load_id, kind):  # a staging bug that drops one row
        real_stage(con, load_id, kind)
        con.execute(f"DELETE FROM staging.{kind} WHERE load_id = ? AND row_number = 1", [load_id])

    monkeypatch.setattr(validate, "stage_rows", lose_a_row)
    with pytest.raises(validate.ConservationError, match="every row received is staged"):
        validate.run(linkage)
    with connect(linkage) as con:  # nothing of the batch was committed
        assert counts(con, "LP") == (0, 0)
        assert con.execute("SELECT count(*) FROM audit.validations").fetchone()[0] == 0
    monkeypatch.setattr(validate, "stage_rows", real_stage)
    validate.run(linkage)  # the fixed code validates the same batch
    with connect(linkage) as con:
        assert counts(con, "LP") == (5, 0)
        stats = json.loads(con.execute("SELECT statistics FROM audit.validations").fetchone()[0])
    assert stats["conservation_expectations"] == {
        "suite": "conservation@1.0.0",
        "success": True,
        "evaluated": 3,
        "failed": [],
    }


def test_empty_required_fields_and_missing_event_column(settings):
    attributes = [attribute() for _ in range(2)]
    events = [event(a["record_token"]) for a in attributes]
    events[1].update(event_month="", extract_date="")
    short = [event(attributes[0]["record_token"])]
    header = [c for c in contract.EVENT_COLUMNS if c != "event_month"]
    with connect(settings) as con:
        add_load(con, "LA", "health", "attributes", attributes)
        add_load(con, "LE", "health", "events", events)
        add_load(con, "LF", "health", "events", short, header=header)
        con.execute("UPDATE raw.loads SET file_hash = 'f-' || load_id")
    validate.run(settings)
    with connect(settings) as con:
        assert counts(con, "LE") == (1, 1)
        rules = con.execute("SELECT rules FROM quarantine.rows WHERE load_id = 'LE'").fetchone()[0]
        assert "expect_column_values_to_not_be_null:event_month" in rules
        assert "expect_column_values_to_not_be_null:extract_date" in rules
        assert counts(con, "LF") == (0, 1)
        reason = con.execute("SELECT reason FROM quarantine.files WHERE load_id = 'LF'").fetchone()
        assert "missing column(s) event_month" in reason[0]


def test_derive_handles_absent_columns():
    import pandas as pd

    frame = pd.DataFrame({"agency": ["csc", None]}, dtype=object)
    out = derive(frame, "csc", "events", None, [])
    assert list(out.columns) == list(DERIVED_COLUMNS["events"])
    assert out["event_month_is_real_month"].isna().all()
    for kind in ("people", "attributes"):
        out = derive(frame, "csc", kind, None)
        assert list(out.columns) == list(DERIVED_COLUMNS[kind])
