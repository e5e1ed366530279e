"""Data-subject rights (warehouse/rights.py, `joinedup rights`): an opt-out list removes a
record from both units' stores and keeps it out of later extracts; subject access says what each
unit holds about a record.

A small hub and linkage unit are built from tests/landing_fixtures.py through the real ingest and
validate stages of both units; the linkage unit's linked tables and the hub's hand-off (record i
of health and of police are child C<i>) are written directly, with a score per child."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest

from expectations import validate
from joinedup import cli
from joinedup.stages import run_stage
from linkage.handoff import MAPPING_FILE
from models.score import SCORES_SCHEMA
from tests.landing_fixtures import event_rows, tok, write_agency, write_csv, write_people
from warehouse import release, rights
from warehouse.assemble import build_linked
from warehouse.db import connect

AGENCIES = ("health", "police")
N = 5
#: opted out: health 0 (child C0 keeps its police record) and both records of child C1
OPTED = [("health", 0), ("health", 1), ("police", 1)]


def child(i: int) -> str:
    return f"C{i:010x}"


def rec(agency: str, i: int) -> str:
    return tok(agency, "rec", i)


def optout_file(path, records, header="agency,record_token") -> str:
    path.write_text(header + "\n" + "".join(f"{a},{t}\n" for a, t in records))
    return str(path)


def mapping() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"agency": a, "record_token": rec(a, i), "child_id": child(i),
             "match_probability_max": 0.97}
            for a in AGENCIES for i in range(N)
        ]
    )  # fmt: skip


def build(settings) -> None:
    """Both units ingested and validated, linked, handed off and scored."""
    linkage = settings.for_unit("linkage")
    linkage.ensure_dirs()
    for agency in AGENCIES:
        write_people(linkage.landing_dir, agency, N)
        write_agency(settings.landing_dir, agency, N)
    for stage in ("link_ingest", "link_validate", "ingest", "validate"):
        run_stage(stage, settings)
    m = mapping()
    with connect(linkage) as con:
        con.register("m", m)
        con.execute(
            "CREATE TABLE linked.records AS SELECT m.agency, m.record_token, m.child_id, "
            "p.load_id, p.row_number, m.match_probability_max FROM m "
            "JOIN staging.people p USING (agency, record_token)"
        )
        con.execute(
            "CREATE TABLE linked.pairs AS SELECT h.record_token AS record_token_l, "
            "'health' AS agency_l, p.record_token AS record_token_r, 'police' AS agency_r, "
            "9.0 AS match_weight, 0.97 AS match_probability FROM m h JOIN m p "
            "ON h.child_id = p.child_id AND h.agency = 'health' AND p.agency = 'police'"
        )
        for i in (0, 2):
            con.execute(
                "INSERT INTO linked.review_queue VALUES (?, 1, 'health', ?, ?, 'police', ?, ?, "
                "NULL, 0.5, 0.0, 0.1, 'link', 'dob: exact', NULL, NULL, 'run1', now())",
                [f"R{i:012x}", rec("health", i), child(i), rec("police", i), child(i)],
            )
            con.execute(
                "INSERT INTO linked.review_decisions VALUES (?, ?, 'health', ?, 'police', ?, "
                "'accept', 'reviewer', 'same child', 0.5, now())",
                [f"D{i}", f"R{i:012x}", rec("health", i), rec("police", i)],
            )
    for folder in (settings.handoff_outbox, settings.handoff_inbox):
        folder.mkdir(parents=True, exist_ok=True)
        m.to_csv(folder / MAPPING_FILE, index=False)
    with connect(settings) as con:
        build_linked(con, None, m)
        con.execute(f"CREATE OR REPLACE TABLE scores.current ({SCORES_SCHEMA})")
        con.execute("CREATE OR REPLACE TABLE features.child_month (child_id VARCHAR, as_of DATE)")
        for i in range(N):
            con.execute(
                "INSERT INTO scores.current VALUES (?, DATE '2026-10-01', ?, ?, 'm1', ?, NULL, "
                "now())",
                [child(i), 0.9 - i / 10, i + 1, json.dumps([f"reason {i}"])],
            )
            con.execute(
                "INSERT INTO features.child_month VALUES (?, DATE '2026-10-01')", [child(i)]
            )


def holders(settings, token: str) -> list[str]:
    """Every (store, table, column) whose VARCHAR or JSON cells hold `token`, except the
    opt-out register."""
    found = []
    for unit in ("hub", "linkage"):
        with connect(settings.for_unit(unit)) as con:
            cols = con.execute(
                "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
                "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
                "WHERE t.table_type = 'BASE TABLE' AND c.table_catalog = current_database() "
                "AND (c.data_type = 'VARCHAR' OR c.data_type = 'JSON')"
            ).fetchall()
            for schema, table, column in cols:
                if (schema, table) == ("rights", "optouts"):
                    continue
                n = con.execute(
                    f'SELECT count(*) FROM {schema}.{table} WHERE CAST("{column}" AS VARCHAR) '
                    "LIKE '%' || ? || '%'",
                    [token],
                ).fetchone()[0]
                if n:
                    found.append(f"{unit}:{schema}.{table}.{column}")
    return found


def snapshot(settings) -> dict:
    out = {}
    for unit in ("hub", "linkage"):
        with connect(settings.for_unit(unit)) as con:
            tables = con.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_catalog = current_database() "
                "AND table_schema <> 'main'"
            ).fetchall()
            for (t,) in tables:
                out[f"{unit}:{t}"] = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    return out


def conservation_holds(settings) -> int:
    """Re-run validation's conservation on every validated load of both units; returns loads."""
    n = 0
    for unit in ("hub", "linkage"):
        s = settings.for_unit(unit)
        context = validate.validation_context(s)
        with connect(s) as con:
            cols = ", ".join(validate.LOAD_COLUMNS)
            loads = con.execute(
                f"SELECT {cols} FROM raw.loads WHERE load_id IN "
                "(SELECT load_id FROM audit.validations)"
            ).fetchall()
            for row in loads:
                load = dict(zip(validate.LOAD_COLUMNS, row, strict=True))
                n_read = con.execute(
                    f"SELECT count(*) FROM raw.{load['kind']} WHERE load_id = ?", [load["load_id"]]
                ).fetchone()[0]
                assert validate.conserve(con, context, load, n_read)["success"]
                n += 1
    return n


def test_optout_removes_records_from_both_stores_and_keeps_them_out(settings, tmp_path):
    build(settings)
    tokens = [rec(a, i) for a, i in OPTED]
    assert holders(settings, tokens[0])  # the scan finds a held token
    out = rights.apply_optouts(
        settings, optout_file(tmp_path / "optout.csv", [(a, rec(a, i)) for a, i in OPTED]), "dpo"
    )
    assert out["records"] == 3
    hub, link = out["units"]["hub"], out["units"]["linkage"]
    assert hub["rows_removed"]["raw.attributes"] == 3
    assert hub["rows_removed"]["raw.events"] == 9
    assert hub["rows_removed"]["staging.events"] == 9
    assert hub["rows_removed"]["linked.mapping"] == 3
    assert hub["rows_removed"]["linked.children"] == 1  # C1 has no record left
    assert hub["rows_removed"]["scores.current"] == 1
    assert hub["children_to_rescore"] == 1  # C0 keeps its police record
    assert hub["handoff_rows_removed"] == 3 and hub["snapshots"] == "none published"
    assert link["rows_removed"]["raw.people"] == 3
    assert link["rows_removed"]["linked.pairs"] == 2
    assert link["rows_removed"]["linked.review_queue"] == 1
    assert link["rows_removed"]["linked.review_decisions"] == 1
    assert link["handoff_rows_removed"] == 3

    for token in tokens:
        assert holders(settings, token) == [], token
        for folder in (settings.handoff_outbox, settings.handoff_inbox):
            assert token not in (folder / MAPPING_FILE).read_text()
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM scores.current").fetchone()[0] == N - 1
        assert con.execute(
            "SELECT n_records FROM linked.children WHERE child_id = ?", [child(0)]
        ).fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM features.child_month").fetchone()[0] == N - 1
    for unit in ("hub", "linkage"):
        with connect(settings.for_unit(unit)) as con:
            assert con.execute("SELECT count(*) FROM rights.optouts").fetchone()[0] == 3
            audit = con.execute(
                "SELECT kind, agency, n_records, rows_removed, requested_by, note, request_id "
                "FROM audit.rights_requests"
            ).fetchall()
            assert len(audit) == 1 and audit[0][:3] == ("optout", "health,police", 3)
            assert audit[0][4] == "dpo" and audit[0][6] == out["request_id"]
            removed = json.loads(audit[0][3])
            assert removed and all(isinstance(v, int) for v in removed.values())
            assert not any(t in " ".join(map(str, audit[0])) for t in tokens)
            purged = con.execute("SELECT sum(n_rows) FROM rights.purged_rows").fetchone()[0]
            assert purged == (12 if unit == "hub" else 3)
    assert conservation_holds(settings) == 6  # 4 hub loads, 2 linkage loads

    # a later extract still holding the opted-out records: withheld at ingest in both units
    linkage = settings.for_unit("linkage")
    write_agency(settings.landing_dir / "next", "health", N + 1)
    write_people(linkage.landing_dir / "next", "health", N + 1)
    hub_in = run_stage("ingest", settings)
    link_in = run_stage("link_ingest", settings)
    assert hub_in["files_loaded"] == 2 and hub_in["rows_withheld_optout"] == 2 + 6
    assert link_in["files_loaded"] == 1 and link_in["rows_withheld_optout"] == 2
    assert run_stage("validate", settings)["batches_validated"] == 2
    assert run_stage("link_validate", settings)["batches_validated"] == 1
    for token in tokens:
        assert holders(settings, token) == [], token
    with connect(settings) as con:  # the records not opted out were staged from the new extract
        assert con.execute(
            "SELECT count(*) FROM staging.attributes WHERE load_id IN (SELECT load_id FROM "
            "raw.loads WHERE file_name = 'health_attributes.csv') AND record_token = ?",
            [rec("health", 2)],
        ).fetchone()[0] == 2  # fmt: skip
    assert conservation_holds(settings) == 9


def test_released_load_still_conserves_after_optout(settings, tmp_path, capsys):
    """Events quarantined (no attributes yet), an opt-out, then the attributes and a release:
    the release's conservation subtracts the purged rows."""
    write_csv(
        settings.landing_dir / "csc_events.csv",
        event_rows("csc", N),
        ("agency", "event_token", "record_token", "event_month", "event_type", "value",
         "extract_date"),
    )  # fmt: skip
    run_stage("ingest", settings)
    assert run_stage("validate", settings)["rows_quarantined"] == 3 * N
    listed = optout_file(tmp_path / "o.csv", [("csc", rec("csc", 0))])
    home = str(settings.home)
    assert cli.main(["--home", home, "rights", "optout", "--file", listed, "--by", "x"]) == 0
    assert rec("csc", 0) not in capsys.readouterr().out
    write_agency(settings.landing_dir / "later", "csc", N)
    # the events file in it is the one already loaded (same content): skipped
    assert run_stage("ingest", settings)["rows_withheld_optout"] == 1
    run_stage("validate", settings)
    with connect(settings) as con:
        load_id = con.execute(
            "SELECT load_id FROM raw.loads WHERE file_name = 'csc_events.csv' "
            "ORDER BY loaded_at LIMIT 1"
        ).fetchone()[0]
    out = release.release(settings, load_id, released_by="tester")
    assert out["rows_released"] == 3 * (N - 1)
    assert holders(settings, rec("csc", 0)) == []
    assert conservation_holds(settings) == 2  # the events and attributes loads


@pytest.mark.parametrize(
    "content, row, rule",
    [
        ("agency,record_token\nhealth,{ok}\nhealth,{upper}\n", "row 2", "rule: record_token"),
        ("agency,record_token\nhealth,{ok}\nnhs,{ok}\n", "row 2", "rule: agency"),
        ("agency,token\nhealth,{ok}\n", "row 0", "rule: header"),
        ("agency,record_token\nhealth,{ok},extra\n", "row 1", "rule: columns"),
        ("agency,record_token\n", "optout.csv", "rule: rows"),
    ],
)
def test_malformed_list_is_refused_whole(settings, tmp_path, content, row, rule):
    build(settings) if rule == "rule: record_token" else None
    before = snapshot(settings)
    upper = rec("health", 3).upper()
    path = tmp_path / "optout.csv"
    path.write_text(content.format(ok=rec("health", 0), upper=upper))
    with pytest.raises(rights.RightsError) as err:
        rights.apply_optouts(settings, path, "dpo")
    message = str(err.value)
    assert "optout.csv" in message and row in message and rule in message
    assert rec("health", 0) not in message and upper not in message
    assert snapshot(settings) == before  # nothing applied, nothing audited


def test_subject_access_answers_per_unit_in_0600_files(settings, capsys):
    build(settings)
    token = rec("health", 2)
    home = str(settings.home)
    argv = ["--home", home, "--json", "rights", "access", "--agency", "health"]
    assert cli.main([*argv, "--record-token", token, "--by", "dpo"]) == 0
    printed = capsys.readouterr().out
    assert token not in printed
    figures = json.loads(printed)
    hub_file, link_file = figures["files"]["hub"], figures["files"]["linkage"]
    for path in (hub_file, link_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = open(path).read()
        assert token not in text
    hub = json.load(open(hub_file))
    assert hub["record_held"] and hub["child_id"] == child(2) and hub["link_probability"] == 0.97
    assert [e["event_month"] for e in hub["events"]] == ["2024-01", "2024-02", "2024-03"]
    assert {e["agency"] for e in hub["events"]} == {"health"}
    assert hub["attributes"][0]["birth_year"] == 2015 and hub["attributes"][0]["current"]
    assert hub["other_records"] == [{"agency": "police", "n_records": 1}]
    assert hub["score"]["rank"] == 3 and hub["score"]["reasons"] == ["reason 2"]
    assert hub["score"]["model_version"] == "m1"

    link = json.load(open(link_file))
    assert link["child_id"] == child(2) and link["validated_versions"] == 1
    assert link["fields_held"]["dob_token"] is True and link["fields_held"]["upn_token"] is False
    assert "first_name_bf" in link["fields_held"]
    assert [d["other_record_agency"] for d in link["review_decisions"]] == ["police"]
    text = open(link_file).read()
    for value in (tok("dob", 2), tok("pc", 2), tok("nhs", 2), "0" * 128):
        assert value not in text  # field names and presence only, never an encoding
    for unit in ("hub", "linkage"):
        with connect(settings.for_unit(unit)) as con:
            audit = con.execute(
                "SELECT request_id, kind, agency, n_records, requested_by FROM audit.rights_requests"
            ).fetchall()
        assert audit == [(figures["request_id"], "access", "health", 1, "dpo")]

    # a malformed token is refused without quoting it
    assert cli.main([*argv, "--record-token", "not-a-token-xyz", "--by", "dpo"]) == 2
    assert "not-a-token-xyz" not in capsys.readouterr().err
