"""Re-releasing quarantined data after a fix (warehouse/release.py, `joinedup quarantine`).

Tiny landing files (tests/landing_fixtures.py) go through the real ingest and validate stages;
the "wrong suite" of a scenario is the committed suite with one expectation changed, patched in
for the first validation only, so the release runs with the committed (corrected) suite."""

from __future__ import annotations

import copy
import json

import pytest

from expectations import validate
from expectations.checks import load_suite
from joinedup import cli, contract
from tests.landing_fixtures import event_rows, people_rows, write_csv
from warehouse import ingest, release
from warehouse.db import connect

INTEGRITY = "record_token_in_people"


def deliver(settings, agency: str, kind: str, rows: list[dict], name: str | None = None) -> str:
    """Write a landing file, ingest it and return its load id."""
    columns = contract.PEOPLE_COLUMNS if kind == "people" else contract.EVENT_COLUMNS
    path = settings.landing_dir / (name or "") / contract.file_name(agency, kind)
    write_csv(path, rows, columns)
    out = ingest.run(settings)
    assert out["files_loaded"] == 1, out
    return ingest.load_id_for(ingest.file_sha256(path))


def counts(settings, load_id: str) -> tuple[int, int, int]:
    """(rows in, staged, quarantined now) for a load."""
    with connect(settings) as con:
        kind = con.execute("SELECT kind FROM raw.loads WHERE load_id = ?", [load_id]).fetchall()
        kind = kind[0][0]
        return con.execute(
            f"SELECT (SELECT count(*) FROM raw.{kind} WHERE load_id = $1), "
            f"(SELECT count(*) FROM staging.{kind} WHERE load_id = $1), "
            "(SELECT count(*) FROM quarantine.rows WHERE load_id = $1)",
            [load_id],
        ).fetchall()[0]


def query(settings, sql: str, params: list | None = None) -> list[tuple]:
    with connect(settings) as con:
        return con.execute(sql, params or []).fetchall()


def patch_suite(monkeypatch, agency: str, kind: str, change) -> None:
    """Validate with a changed copy of the committed suite (a wrong suite, later corrected)."""
    wrong = copy.deepcopy(load_suite(agency, kind))
    wrong["meta"]["version"] = "0.9.0-wrong"
    change(wrong)
    real = validate.load_suite
    monkeypatch.setattr(
        validate, "load_suite", lambda a, k: wrong if (a, k) == (agency, kind) else real(a, k)
    )


def expectation(suite: dict, etype: str, column: str | None = None) -> dict:
    return next(
        e
        for e in suite["expectations"]
        if e["type"] == etype and e["kwargs"].get("column") == column
    )


def test_events_are_released_once_the_people_file_arrives(settings, monkeypatch):
    events = deliver(settings, "health", "events", event_rows("health", 5))
    assert validate.run(settings)["rows_quarantined"] == 15  # no people to refer to yet
    assert counts(settings, events) == (15, 0, 15)
    listed = release.list_quarantine(settings, rule=INTEGRITY)
    assert listed["by_rule"] == {f"{events} expect_column_values_to_be_in_set:{INTEGRITY}": 15}

    deliver(settings, "health", "people", people_rows("health", 5))
    after_people = validate.run(settings)
    assert after_people["batches_validated"] == 1 and after_people["rows_staged"] == 5
    assert counts(settings, events) == (15, 0, 15)  # validate never re-validates a load

    # a staging bug during the release: conservation fails and nothing is kept
    real_stage = validate.stage_rows

    def lose_a_row(con, load_id, kind, skip_staged=False):
        real_stage(con, load_id, kind, skip_staged=skip_staged)
        con.execute(f"DELETE FROM staging.{kind} WHERE load_id = ? AND row_number = 1", [load_id])

    monkeypatch.setattr(validate, "stage_rows", lose_a_row)
    with pytest.raises(validate.ConservationError):
        release.release(settings, events, rule=INTEGRITY)
    assert counts(settings, events) == (15, 0, 15)
    assert query(settings, "SELECT count(*) FROM audit.releases") == [(0,)]
    assert query(settings, "SELECT count(*) FROM quarantine.row_history") == [(0,)]
    monkeypatch.setattr(validate, "stage_rows", real_stage)

    out = release.release(settings, events, rule=INTEGRITY, released_by="engineer-1")
    assert out["changed"] and out["mode"] == "revalidate" and out["scope"] == "rows"
    assert (out["rows_considered"], out["rows_released"], out["rows_still_quarantined"]) == (
        15,
        15,
        0,
    )
    assert out["suite"] == f"health_events@{load_suite('health', 'events')['meta']['version']}"
    assert out["load"] == {"rows_in": 15, "staged": 15, "quarantined": 0}
    assert counts(settings, events) == (15, 15, 0)
    audit = query(
        settings,
        "SELECT load_id, scope, mode, suite_version, rows_considered, rows_released, "
        "rows_still_quarantined, n_rows, n_staged, n_quarantined, released_by, statistics "
        "FROM audit.releases",
    )
    assert len(audit) == 1 and audit[0][:11] == (
        events,
        "rows",
        "revalidate",
        load_suite("health", "events")["meta"]["version"],
        15,
        15,
        0,
        15,
        15,
        0,
        "engineer-1",
    )
    assert json.loads(audit[0][11])["conservation_expectations"]["success"] is True
    history = query(
        settings,
        "SELECT action, count(*), min(rules), any_value(released_by) "
        "FROM quarantine.row_history GROUP BY 1",
    )
    assert history == [
        ("released", 15, f"expect_column_values_to_be_in_set:{INTEGRITY}", "engineer-1")
    ]
    outcomes = query(
        settings,
        "SELECT outcome FROM audit.validations WHERE load_id = ? ORDER BY validated_at",
        [events],
    )
    assert outcomes == [("rows_quarantined",), ("released",)]
    # downstream: the current view holds the released events
    assert query(
        settings, "SELECT count(*) FROM staging.current_events WHERE load_id = ?", [events]
    ) == [(15,)]

    # validate does not re-validate or double-stage; a second identical release is a no-op
    assert validate.run(settings)["batches_validated"] == 0
    again = release.release(settings, events, rule=INTEGRITY)
    assert not again["changed"] and again["rows_considered"] == 0 and again["release_id"] is None
    assert counts(settings, events) == (15, 15, 0)
    assert query(settings, "SELECT count(*) FROM audit.releases") == [(1,)]
    assert query(settings, "SELECT count(*) FROM audit.validations") == [(3,)]


def test_corrected_suite_releases_rows_and_rows_that_still_fail_stay(settings, monkeypatch):
    rows = people_rows("health", 8)
    for i in (1, 2, 5):
        rows[i]["ethnicity"] = "MIXED"
    rows[5]["birth_year_month"] = "1980-01"  # row 6: MIXED and too old
    rows[6]["birth_year_month"] = "1980-01"  # row 7: too old only
    load = deliver(settings, "health", "people", rows)

    def no_mixed(suite: dict) -> None:  # a wrong suite that forgot an ethnicity code
        e = expectation(suite, "expect_column_values_to_be_in_set", "ethnicity")
        e["kwargs"]["value_set"] = [v for v in e["kwargs"]["value_set"] if v != "MIXED"]

    patch_suite(monkeypatch, "health", "people", no_mixed)
    validate.run(settings)
    monkeypatch.undo()  # the suite is corrected (the committed one)
    assert counts(settings, load) == (8, 4, 4)

    out = release.release(settings, load)
    assert (out["rows_considered"], out["rows_released"], out["rows_still_quarantined"]) == (
        4,
        2,
        2,
    )
    assert out["rows_rules_updated"] == 1  # row 6 is now quarantined for its age only
    bym = "expect_column_values_to_be_in_set:birth_year_month_plausible"
    assert out["still_quarantined_by_rule"] == {bym: 2}
    assert counts(settings, load) == (8, 6, 2)
    now = dict(
        query(settings, "SELECT row_number, rules FROM quarantine.rows WHERE load_id = ?", [load])
    )
    assert now == {6: bym, 7: bym}
    history = query(
        settings,
        "SELECT row_number, action, rules, new_rules FROM quarantine.row_history ORDER BY 1",
    )
    assert [(r[0], r[1]) for r in history] == [
        (2, "released"),
        (3, "released"),
        (6, "rules_updated"),
    ]
    assert "ethnicity" in history[2][2] and history[2][3] == bym  # the old rules are kept
    staged = query(
        settings,
        "SELECT ethnicity, extract_date FROM staging.people WHERE load_id = ? AND row_number = 2",
        [load],
    )
    assert staged[0][0] == "MIXED" and str(staged[0][1]) == "2026-10-01"  # typed like validate

    again = release.release(settings, load)  # rows 6 and 7 still fail the same rule
    assert not again["changed"] and again["rows_still_quarantined"] == 2
    assert query(settings, "SELECT count(*) FROM audit.releases") == [(1,)]


def test_forced_release_needs_a_reason_is_audited_and_cascades_to_events(settings):
    people = people_rows("health", 4)
    people[1]["birth_year_month"] = "1980-01"  # row 2: too old for the suite
    events = event_rows("health", 4)  # 3 per person; person 2's are rows 4-6
    bad = dict(events[0], event_token="ab" * 16, event_date="2021-02-30")
    events.append(bad)  # row 13: not a real date
    people_load = deliver(settings, "health", "people", people)
    events_load = deliver(settings, "health", "events", events, name="later")
    validate.run(settings)
    assert counts(settings, people_load) == (4, 3, 1)
    assert counts(settings, events_load) == (13, 9, 4)

    with pytest.raises(release.ReleaseRefused, match="--reason"):
        release.release(settings, people_load, force=True)
    with pytest.raises(release.ReleaseRefused, match="named rows"):
        release.release(settings, people_load, force=True, reason="checked")
    reason = "birth year confirmed with the agency's records team"
    out = release.release(settings, people_load, rows=[2], force=True, reason=reason)
    assert out["mode"] == "force" and out["rows_released"] == 1
    assert counts(settings, people_load) == (4, 4, 0)
    assert events_load in out["then_release"] and INTEGRITY in out["then_release"]
    audit = query(settings, "SELECT mode, reason, row_filter, rows_released FROM audit.releases")
    assert audit == [("force", reason, "2", 1)]
    assert query(settings, "SELECT action FROM quarantine.row_history") == [("force_released",)]
    assert query(
        settings,
        "SELECT outcome, success FROM audit.validations WHERE outcome = 'force_released'",
    ) == [("force_released", False)]

    # the person is staged now, so their events pass referential integrity on re-validation
    cascade = release.release(settings, events_load, rule=INTEGRITY)
    assert cascade["rows_released"] == 3 and counts(settings, events_load) == (13, 12, 1)
    # a forced row that cannot be typed is refused whole, nothing changes
    with pytest.raises(release.ReleaseRefused, match="cannot be typed"):
        release.release(settings, events_load, rows=[13], force=True, reason="looks fine")
    assert counts(settings, events_load) == (13, 12, 1)
    assert query(settings, "SELECT count(*) FROM audit.releases") == [(2,)]


def test_whole_batch_release_after_a_wrong_critical_rule_is_corrected(settings, monkeypatch):
    rows = people_rows("health", 6)
    rows[3]["sex"] = "X"  # row 4: a real row-level fault
    load = deliver(settings, "health", "people", rows)

    def needs_100_rows(suite: dict) -> None:  # a critical rule set wrongly
        expectation(suite, "expect_table_row_count_to_be_between")["kwargs"]["min_value"] = 100

    patch_suite(monkeypatch, "health", "people", needs_100_rows)
    assert validate.run(settings)["batches_quarantined"] == 1
    assert counts(settings, load) == (6, 0, 6)
    listed = release.list_quarantine(settings, load_id=load)
    assert listed["batches_quarantined_whole"] == 1 and listed["loads"][0]["batch_quarantined"]

    with pytest.raises(release.ReleaseRefused, match="released whole"):
        release.release(settings, load, rows=[1])
    blocked = release.release(settings, load)  # the wrong suite is still in use
    assert not blocked["changed"] and blocked["note"].startswith("a critical rule still fails")
    assert blocked["blocked_by_critical"].startswith("health_people.csv: ")
    assert counts(settings, load) == (6, 0, 6)
    monkeypatch.undo()  # the suite is corrected

    out = release.release(settings, load)
    assert out["scope"] == "batch" and out["batch_released"]
    assert (out["rows_released"], out["rows_still_quarantined"], out["rows_rules_updated"]) == (
        5,
        1,
        1,
    )
    assert counts(settings, load) == (6, 5, 1)
    assert query(settings, "SELECT rules FROM quarantine.rows") == [
        ("expect_column_values_to_be_in_set:sex",)
    ]
    files = query(
        settings, "SELECT released_at IS NOT NULL, released_by, release_id FROM quarantine.files"
    )
    assert files[0][0] and files[0][1] and files[0][2] == out["release_id"]
    assert release.list_quarantine(settings)["batches_quarantined_whole"] == 0
    # the released batch now counts as the agency's people for referential integrity
    events = deliver(settings, "health", "events", event_rows("health", 6, per_person=1))
    validate.run(settings)
    assert counts(settings, events) == (6, 5, 1)  # only the person still quarantined
    again = release.release(settings, load)
    assert not again["changed"]


def test_refused_files_cannot_be_released_and_the_cli_prints_no_tokens(settings, capsys):
    people = people_rows("health", 4)
    people[2]["sex"] = "X"
    load = deliver(settings, "health", "people", people)
    validate.run(settings)
    leaky = people_rows("police", 2)
    leaky[0]["first_name_bf"] = "Alice"  # plaintext where an encoding belongs
    path = write_csv(settings.landing_dir / "police_people.csv", leaky, contract.PEOPLE_COLUMNS)
    refused_id = ingest.load_id_for(ingest.file_sha256(path))
    assert ingest.run(settings)["files_refused_plaintext"] == 1
    with pytest.raises(
        release.ReleaseRefused, match="plaintext identifiers.*can never be released"
    ):
        release.release(settings, refused_id)
    with pytest.raises(release.ReleaseRefused, match="no load"):
        release.release(settings, "Lnot-a-load")

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(["--home", str(settings.home), *argv])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, text = run("quarantine", "list")
    assert code == 0 and "never releasable" in text and "health_people.csv: 1 of 4" in text
    code, listed = run("--json", "quarantine", "list")
    figures = json.loads(listed)
    assert figures["refused_files"][0]["refused"] == "plaintext"
    assert figures["rules"] == [
        {"load_id": load, "rule": "expect_column_values_to_be_in_set:sex", "rows": 1}
    ]
    code, refused = run("quarantine", "release", "--load", refused_id)
    assert code == 2 and "can never be released" in refused
    code, forced = run("quarantine", "release", "--load", load, "--rows", "3", "--force")
    assert code == 2 and "--reason" in forced
    code, out = run(
        "quarantine", "release", "--load", load, "--rows", "3", "--force",
        "--reason", "sex code agreed with the agency", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["rows_released"] == 1
    secrets = {
        v
        for table in ("raw.people", "raw.events")
        for row in query(settings, f"SELECT * EXCLUDE (load_id) FROM {table}")
        for v in row
        if isinstance(v, str) and len(v) >= 16
    } | {"Alice"}
    assert len(secrets) > 10
    for output in (text, listed, refused, forced, out):
        for s in secrets:
            assert s not in output
