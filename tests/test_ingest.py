"""Ingest: every landing file loads once, whole, traceably; unreadable files are quarantined.
Contract v2: the hub takes attributes and events files, the linkage unit people files, each into
its own store."""

from __future__ import annotations

import gzip

from joinedup import contract
from tests.landing_fixtures import (
    attribute_rows,
    event_rows,
    people_rows,
    write_agency,
    write_csv,
    write_people,
)
from warehouse import ingest
from warehouse.db import connect


def _count(settings, sql):
    with connect(settings) as con:
        return con.execute(sql).fetchone()[0]


def _linkage(settings):
    lk = settings.for_unit("linkage")
    lk.ensure_dirs()
    return lk


def test_loads_each_file_once_with_lineage(settings):
    write_agency(settings.landing_dir, "health", n_people=5)
    first = ingest.run(settings)
    assert first["files_loaded"] == 2
    assert first["rows_loaded"] == 5 + 15
    again = ingest.run(settings)
    assert again["files_loaded"] == 0 and again["files_skipped_already_seen"] == 2
    assert _count(settings, "SELECT count(*) FROM raw.attributes") == 5
    assert _count(settings, "SELECT count(*) FROM raw.events") == 15
    with connect(settings) as con:
        rows = con.execute(
            "SELECT l.file_name, l.file_hash, p.row_number FROM raw.attributes p "
            "JOIN raw.loads l USING (load_id) ORDER BY p.row_number"
        ).fetchall()
    assert [r[2] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r[0] == "health_attributes.csv" and len(r[1]) == 64 for r in rows)


def test_linkage_unit_loads_people_once_with_lineage_into_its_own_store(settings):
    lk = _linkage(settings)
    write_people(lk.landing_dir, "health", n_people=5)
    first = ingest.run(lk)
    assert first["files_loaded"] == 1 and first["rows_loaded"] == 5
    again = ingest.run(lk)
    assert again["files_loaded"] == 0 and again["files_skipped_already_seen"] == 1
    assert lk.warehouse_path != settings.warehouse_path
    with connect(lk) as con:
        rows = con.execute(
            "SELECT l.file_name, l.file_hash, p.row_number FROM raw.people p "
            "JOIN raw.loads l USING (load_id) ORDER BY p.row_number"
        ).fetchall()
    assert [r[2] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r[0] == "health_people.csv" and len(r[1]) == 64 for r in rows)
    # the hub's store holds nothing of it (and has no people table at all)
    assert _count(settings, "SELECT count(*) FROM raw.loads") == 0
    assert (
        _count(
            settings,
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'raw' AND table_name = 'people'",
        )
        == 0
    )


def test_same_content_under_a_new_folder_is_not_loaded_twice(settings):
    write_agency(settings.landing_dir, "police", n_people=3)
    write_agency(settings.landing_dir / "resent", "police", n_people=3)
    out = ingest.run(settings)
    assert out["files_loaded"] == 2 and out["files_skipped_already_seen"] == 2


def test_bom_and_crlf_load_like_plain_csv(settings):
    lk = _linkage(settings)
    write_csv(
        lk.landing_dir / "csc_people.csv",
        people_rows("csc", 4),
        contract.PEOPLE_COLUMNS,
        newline="\r\n",
        bom=True,
    )
    out = ingest.run(lk)
    assert out["files_loaded"] == 1 and out["rows_loaded"] == 4
    with connect(lk) as con:
        header = con.execute("SELECT header FROM raw.loads").fetchone()[0]
        last = con.execute("SELECT extract_date FROM raw.people WHERE row_number = 4").fetchone()[0]
    assert header.split(",") == list(contract.PEOPLE_COLUMNS)
    assert last == "2026-10-01"


def test_bom_and_crlf_attributes_load_like_plain_csv(settings):
    write_csv(
        settings.landing_dir / "csc_attributes.csv",
        attribute_rows("csc", 4),
        contract.ATTRIBUTE_COLUMNS,
        newline="\r\n",
        bom=True,
    )
    out = ingest.run(settings)
    assert out["files_loaded"] == 1 and out["rows_loaded"] == 4
    with connect(settings) as con:
        header = con.execute("SELECT header FROM raw.loads").fetchone()[0]
        last = con.execute(
            "SELECT extract_date FROM raw.attributes WHERE row_number = 4"
        ).fetchone()[0]
    assert header.split(",") == list(contract.ATTRIBUTE_COLUMNS)
    assert last == "2026-10-01"


def test_missing_column_is_loaded_as_received_and_the_file_kept(settings):
    cols = [c for c in contract.EVENT_COLUMNS if c != "event_type"]
    path = write_csv(settings.landing_dir / "police_events.csv", event_rows("police", 2), cols)
    out = ingest.run(settings)
    assert out["files_loaded"] == 1
    with connect(settings) as con:
        header, status = con.execute("SELECT header, status FROM raw.loads").fetchone()
        nulls = con.execute("SELECT count(*) FROM raw.events WHERE event_type IS NULL").fetchone()[
            0
        ]
    assert "event_type" not in header.split(",") and status == "loaded"
    assert nulls == 6
    kept = list(settings.quarantine_dir.rglob("police_events.csv"))
    assert len(kept) == 1 and kept[0].read_bytes() == path.read_bytes()


def test_unreadable_files_are_quarantined_with_a_reason_and_nothing_loaded(settings):
    land = settings.landing_dir
    good = write_csv(land / "tmp.csv", attribute_rows("health", 2), contract.ATTRIBUTE_COLUMNS)
    (land / "health_attributes.csv").write_bytes(gzip.compress(good.read_bytes()))
    good.unlink()
    (land / "police_attributes.csv").write_bytes("record_token\n\xe9\n".encode("latin-1"))
    (land / "education_attributes.csv").write_bytes(b"")
    (land / "csc_events.csv").write_text("agency;event_token;record_token\ncsc;a;b\n")
    (land / "notes.txt").write_text("hello")
    broken = ",".join(contract.ATTRIBUTE_COLUMNS) + '\n"unbalanced,quote\n'
    (land / "sub").mkdir()
    (land / "sub" / "csc_attributes.csv").write_text(broken)
    out = ingest.run(settings)
    assert out["files_loaded"] == 0
    reasons = {q["file"]: q["reason"] for q in out["quarantined"]}
    assert "gzip" in reasons["health_attributes.csv"]
    assert "UTF-8" in reasons["police_attributes.csv"]
    assert "empty" in reasons["education_attributes.csv"]
    assert "delimiter" in reasons["csc_events.csv"]
    assert "not a contract file name" in reasons["notes.txt"]
    assert "csc_attributes.csv" in reasons and "CSV" in reasons["csc_attributes.csv"]
    assert _count(settings, "SELECT count(*) FROM raw.loads") == 0
    assert _count(settings, "SELECT count(*) FROM raw.attributes") == 0
    assert _count(settings, "SELECT count(*) FROM quarantine.files") == 6
    assert len([p for p in settings.quarantine_dir.rglob("*") if p.is_file()]) == 6
    # quarantined files are remembered: a rerun does not quarantine them again
    assert ingest.run(settings)["files_skipped_already_seen"] == 6


def test_unreadable_people_files_are_quarantined_at_the_linkage_unit(settings):
    lk = _linkage(settings)
    land = lk.landing_dir
    good = write_csv(land / "tmp.csv", people_rows("health", 2), contract.PEOPLE_COLUMNS)
    (land / "health_people.csv").write_bytes(gzip.compress(good.read_bytes()))
    good.unlink()
    (land / "police_people.csv").write_bytes("record_token\n\xe9\n".encode("latin-1"))
    (land / "education_people.csv").write_bytes(b"")
    broken = ",".join(contract.PEOPLE_COLUMNS) + '\n"unbalanced,quote\n'
    (land / "sub").mkdir()
    (land / "sub" / "csc_people.csv").write_text(broken)
    out = ingest.run(lk)
    assert out["files_loaded"] == 0
    reasons = {q["file"]: q["reason"] for q in out["quarantined"]}
    assert "gzip" in reasons["health_people.csv"]
    assert "UTF-8" in reasons["police_people.csv"]
    assert "empty" in reasons["education_people.csv"]
    assert "CSV" in reasons["csc_people.csv"]
    assert _count(lk, "SELECT count(*) FROM raw.people") == 0
    assert _count(lk, "SELECT count(*) FROM quarantine.files") == 4
    assert len([p for p in lk.quarantine_dir.rglob("*") if p.is_file()]) == 4
    assert not [p for p in settings.quarantine_dir.rglob("*") if p.is_file()]
    assert ingest.run(lk)["files_skipped_already_seen"] == 4
