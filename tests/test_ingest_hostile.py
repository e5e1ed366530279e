"""Hostile and broken deliveries through the real ingest (and validate) path, at both units.

Each case checks the error names the file, the row where there is one, and the rule; that the
file became no load at all or loaded whole (no partial load); and that every row is accounted
for (rows received = rows staged + rows quarantined).  Hostile values (accented and non-Latin
names, numbers written with dashes, dots or slashes, 8-digit dates, near-encodings) in either
unit's files are refused whole or not stored, and in every case appear nowhere in the unit's store,
quarantine folder or outputs.  A file of the other unit's kind is refused (rule: separation) and
nothing of it is kept.  A property-based test then throws generated corruptions of a good file at
ingest and checks the same invariants for each.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from joinedup import contract
from tests.landing_fixtures import (
    attribute_rows,
    event_rows,
    people_rows,
    tok,
    write_agency,
    write_csv,
    write_people,
)
from warehouse import ingest
from warehouse.db import connect


def _linkage(settings):
    lk = settings.for_unit("linkage")
    lk.ensure_dirs()
    return lk


def _rows(settings, sql: str, params: list | None = None) -> list[tuple]:
    with connect(settings) as con:
        return con.execute(sql, params or []).fetchall()


def _file_outcome(settings, name: str) -> tuple[int, list[str]]:
    """(raw rows loaded from files called `name` into the unit's store, quarantine reasons for
    them)."""
    kinds = contract.UNIT_KINDS[settings.unit]
    union = " UNION ALL ".join(
        f"SELECT count(*) AS n FROM raw.{k} JOIN raw.loads l USING (load_id) WHERE l.file_name = ?"
        for k in kinds
    )
    loaded = _rows(settings, f"SELECT coalesce(sum(n), 0) FROM ({union})", [name] * len(kinds))[0][
        0
    ]
    reasons = [
        r[0]
        for r in _rows(settings, "SELECT reason FROM quarantine.files WHERE file_name = ?", [name])
    ]
    return int(loaded), reasons


def _good_events(tmp: Path, n_people: int = 4) -> bytes:
    path = write_csv(tmp / "x.csv", event_rows("police", n_people), contract.EVENT_COLUMNS)
    return path.read_bytes()


def _refused_whole(settings, name: str, *needles: str) -> str:
    out = ingest.run(settings)
    loaded, reasons = _file_outcome(settings, name)
    assert loaded == 0, "a refused file must not be partly loaded"
    assert out["files_quarantined"] == 1 and len(reasons) == 1, out
    for needle in (name, *needles):
        assert needle in reasons[0], reasons[0]
    return reasons[0]


def test_wrong_encoding_is_refused_with_the_rule(settings, tmp_path):
    data = _good_events(tmp_path).replace(b"2026-10-01", "2026-10-01 é".encode("latin-1"), 1)
    (settings.landing_dir / "police_events.csv").write_bytes(data)
    _refused_whole(settings, "police_events.csv", "rule: encoding")


def test_bom_and_crlf_load_whole(settings):
    rows = event_rows("police", 3)
    write_csv(settings.landing_dir / "a" / "police_events.csv", rows, contract.EVENT_COLUMNS,
              newline="\r\n", bom=True)  # fmt: skip
    out = ingest.run(settings)
    assert out["files_loaded"] == 1 and out["rows_loaded"] == len(rows)
    got = _rows(settings, "SELECT event_token, extract_date FROM raw.events ORDER BY row_number")
    assert [g[0] for g in got] == [r["event_token"] for r in rows]
    assert {g[1] for g in got} == {"2026-10-01"}  # no stray \r kept in the last column
    header = _rows(settings, "SELECT header FROM raw.loads")[0][0]
    assert header == ",".join(contract.EVENT_COLUMNS)  # no BOM kept in the first name


def test_unbalanced_quote_names_the_row(settings, tmp_path):
    lines = _good_events(tmp_path).decode().splitlines(keepends=True)
    lines[3] = (
        lines[3].replace(",police,", ',"police,', 1) if ",police," in lines[3] else ('"' + lines[3])
    )
    (settings.landing_dir / "police_events.csv").write_text("".join(lines))
    _refused_whole(settings, "police_events.csv", "row 3", "rule: csv")


def test_short_row_names_the_row_without_quoting_it(settings, tmp_path):
    lines = _good_events(tmp_path).decode().splitlines(keepends=True)
    secret = lines[5].split(",")[1]
    lines[5] = ",".join(lines[5].split(",")[:3]) + "\n"
    (settings.landing_dir / "police_events.csv").write_text("".join(lines))
    reason = _refused_whole(settings, "police_events.csv", "row 5", "rule: csv")
    assert secret not in reason


def test_empty_and_header_only_files(settings):
    (settings.landing_dir / "health_attributes.csv").write_bytes(b"")
    write_csv(settings.landing_dir / "health_events.csv", [], contract.EVENT_COLUMNS)
    out = ingest.run(settings)
    assert out["files_quarantined"] == 2 and out["files_loaded"] == 0
    reasons = dict(_rows(settings, "SELECT file_name, reason FROM quarantine.files"))
    assert (
        "empty file" in reasons["health_attributes.csv"]
        and "rule: header" in reasons["health_attributes.csv"]
    )
    assert "header only" in reasons["health_events.csv"]
    assert "rule: rows" in reasons["health_events.csv"]


def test_empty_and_header_only_people_files_at_the_linkage_unit(settings):
    lk = _linkage(settings)
    (lk.landing_dir / "health_people.csv").write_bytes(b"")
    write_csv(lk.landing_dir / "police_people.csv", [], contract.PEOPLE_COLUMNS)
    out = ingest.run(lk)
    assert out["files_quarantined"] == 2 and out["files_loaded"] == 0
    reasons = dict(_rows(lk, "SELECT file_name, reason FROM quarantine.files"))
    assert "empty file" in reasons["health_people.csv"]
    assert "rule: header" in reasons["health_people.csv"]
    assert "header only" in reasons["police_people.csv"]
    assert "rule: rows" in reasons["police_people.csv"]


def test_huge_field_is_refused(settings):
    rows = event_rows("police", 3)
    rows[4]["value"] = "9" * 5000
    write_csv(settings.landing_dir / "police_events.csv", rows, contract.EVENT_COLUMNS)
    _refused_whole(settings, "police_events.csv", "row 5", "column value", "rule: field_size")


def test_wrong_delimiter_gzip_and_truncation(settings, tmp_path):
    good = _good_events(tmp_path)
    (settings.landing_dir / "police_events.csv").write_bytes(good.replace(b",", b";"))
    (settings.landing_dir / "csc_events.csv").write_bytes(gzip.compress(good))
    (settings.landing_dir / "health_events.csv").write_bytes(good[: len(good) - 7])
    out = ingest.run(settings)
    assert out["files_quarantined"] == 3 and out["files_loaded"] == 0
    reasons = dict(_rows(settings, "SELECT file_name, reason FROM quarantine.files"))
    assert "rule: delimiter" in reasons["police_events.csv"]
    assert "gzip" in reasons["csc_events.csv"]
    assert "rule: truncated" in reasons["health_events.csv"]
    # the originals are kept, byte for byte, for the agency to see
    for name, stored in _rows(settings, "SELECT file_name, stored_path FROM quarantine.files"):
        assert Path(stored).is_file(), name
    assert _rows(settings, "SELECT count(*) FROM raw.loads")[0][0] == 0


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("first_name_bf", "Olivia", "name or text"),
        ("dob_token", "2014-03-09", "date"),
        ("postcode_token", "LS6 2AB", "postcode"),
        ("nhs_token", "943 476 5919", "number or id"),
        ("birth_year_month", "2014-03-09", "full date of birth"),
        ("postcode_sector", "LS6 2AB", "full postcode"),
        ("surname_bf", "Smith", "name or text"),
    ],
)
def test_plaintext_where_encodings_belong_is_refused_and_not_kept(settings, column, value, kind):
    lk = _linkage(settings)
    rows = people_rows("health", 6)
    rows[3][column] = value
    path = write_csv(lk.landing_dir / "health_people.csv", rows, contract.PEOPLE_COLUMNS)
    out = ingest.run(lk)
    assert out["files_refused_plaintext"] == 1 and out["files_loaded"] == 0
    reason = _rows(lk, "SELECT reason, stored_path FROM quarantine.files")
    assert len(reason) == 1 and reason[0][1] is None  # no copy kept at the linkage unit
    assert f"row 4: column {column}" in reason[0][0] and kind in reason[0][0]
    assert value not in reason[0][0]
    assert not path.exists()  # the landing copy is deleted
    assert not list(lk.quarantine_dir.rglob("*.csv"))
    assert _rows(lk, "SELECT count(*) FROM raw.people")[0][0] == 0


@pytest.mark.parametrize(
    ("file_kind", "column", "value", "kind"),
    [
        ("attributes", "record_token", "Olivia", "name or text"),
        ("attributes", "birth_year", "2014-03-09", "full date of birth"),
        ("attributes", "ward_code", "LS6 2AB", "full postcode"),
        ("events", "record_token", "943 476 5919", "number or id"),
        ("events", "event_token", "LS6 2AB", "postcode"),
    ],
)
def test_plaintext_in_hub_files_is_refused_and_not_kept(settings, file_kind, column, value, kind):
    rows = attribute_rows("health", 6) if file_kind == "attributes" else event_rows("health", 2)
    rows[3][column] = value
    name = contract.file_name("health", file_kind)
    path = write_csv(settings.landing_dir / name, rows, contract.columns_for(file_kind))
    out = ingest.run(settings)
    assert out["files_refused_plaintext"] == 1 and out["files_loaded"] == 0
    reason = _rows(settings, "SELECT reason, stored_path FROM quarantine.files")
    assert len(reason) == 1 and reason[0][1] is None  # no copy kept at the hub
    assert f"row 4: column {column}" in reason[0][0] and kind in reason[0][0]
    assert value not in reason[0][0]
    assert not path.exists()  # the landing copy is deleted
    assert not list(settings.quarantine_dir.rglob("*.csv"))
    assert _rows(settings, f"SELECT count(*) FROM raw.{file_kind}")[0][0] == 0


def test_a_raw_extract_sent_by_mistake_is_refused(settings):
    lk = _linkage(settings)
    raw = [
        {"source_id": "H0000001", "first_name": "Amelia", "surname": "Jones",
         "dob": "2015-01-02", "sex": "F", "postcode": "JU1 2AB", "extract_date": "2026-10-01"}
    ]  # fmt: skip
    write_csv(lk.landing_dir / "health_people.csv", raw, contract.RAW_PEOPLE_COLUMNS)
    out = ingest.run(lk)
    assert out["files_refused_plaintext"] == 1
    assert "raw-extract column" in _rows(lk, "SELECT reason FROM quarantine.files")[0][0]
    # the raw events extract sent to the hub
    raw_events = [
        {"event_id": "E0000001", "source_id": "H0000001", "event_date": "2024-03-05",
         "event_type": "ae_attendance", "value": "", "extract_date": "2026-10-01"}
    ]  # fmt: skip
    write_csv(settings.landing_dir / "health_events.csv", raw_events, contract.RAW_EVENT_COLUMNS)
    out = ingest.run(settings)
    assert out["files_refused_plaintext"] == 1
    reason = _rows(settings, "SELECT reason FROM quarantine.files")[0][0]
    assert "raw-extract column" in reason and "H0000001" not in reason and "E0000001" not in reason
    _assert_nowhere(settings, "H0000001", "E0000001")
    _assert_nowhere(lk, "H0000001", "Amelia", "Jones", "JU1 2AB")


def test_extra_missing_and_duplicated_rows_reach_validation_whole(settings):
    """Readable files with the wrong columns or duplicated rows load whole into raw; validation
    then quarantines the batch (columns) or the rows (duplicates), and the counts add up."""
    from expectations import validate

    write_agency(settings.landing_dir, "health", n_people=5)
    attributes = attribute_rows("police", 4)
    write_csv(settings.landing_dir / "police_attributes.csv", attributes,
              [*contract.ATTRIBUTE_COLUMNS, "unexpected"])  # fmt: skip
    events = event_rows("police", 4)
    write_csv(settings.landing_dir / "police_events.csv", events,
              [c for c in contract.EVENT_COLUMNS if c != "event_type"])  # fmt: skip
    dup_rows = event_rows("education", 3)
    write_csv(settings.landing_dir / "education_events.csv", dup_rows + dup_rows[:2],
              contract.EVENT_COLUMNS)  # fmt: skip
    write_csv(settings.landing_dir / "education_attributes.csv", attribute_rows("education", 3),
              contract.ATTRIBUTE_COLUMNS)  # fmt: skip
    ingest.run(settings)
    figures = validate.run(settings)
    for name, n in (("police_attributes.csv", 4), ("police_events.csv", 12)):
        loaded, reasons = _file_outcome(settings, name)
        assert loaded == n  # whole in raw, as received
        assert len(reasons) == 1 and name in reasons[0]  # and the whole batch quarantined
    assert "event_type" in _file_outcome(settings, "police_events.csv")[1][0]
    assert "unexpected" in _file_outcome(settings, "police_attributes.csv")[1][0]
    with connect(settings) as con:
        received = con.execute(
            "SELECT (SELECT count(*) FROM raw.attributes) + (SELECT count(*) FROM raw.events)"
        ).fetchall()[0][0]
        staged = con.execute(
            "SELECT (SELECT count(*) FROM staging.attributes) "
            "+ (SELECT count(*) FROM staging.events)"
        ).fetchall()[0][0]
        quarantined = con.execute("SELECT count(*) FROM quarantine.rows").fetchall()[0][0]
        dup_q = con.execute(
            "SELECT count(*) FROM quarantine.rows q JOIN raw.loads l USING (load_id) "
            "WHERE l.file_name = 'education_events.csv'"
        ).fetchall()[0][0]
    assert received == staged + quarantined == figures["rows_validated"]
    assert figures["rows_staged"] == staged and figures["rows_quarantined"] == quarantined
    assert figures["batches_quarantined"] == 2
    assert dup_q >= 2  # the repeated rows are held back, with their rule

    # the linkage unit: a people file with an extra column, one with repeated records
    lk = _linkage(settings)
    write_people(lk.landing_dir, "health", n_people=5)
    write_csv(lk.landing_dir / "police_people.csv", people_rows("police", 4),
              [*contract.PEOPLE_COLUMNS, "unexpected"])  # fmt: skip
    dup_people = people_rows("education", 3)
    write_csv(lk.landing_dir / "education_people.csv", dup_people + dup_people[:2],
              contract.PEOPLE_COLUMNS)  # fmt: skip
    ingest.run(lk)
    figures = validate.run(lk)
    loaded, reasons = _file_outcome(lk, "police_people.csv")
    assert loaded == 4 and len(reasons) == 1 and "police_people.csv" in reasons[0]
    assert "unexpected" in reasons[0]
    with connect(lk) as con:
        received = con.execute("SELECT count(*) FROM raw.people").fetchall()[0][0]
        staged = con.execute("SELECT count(*) FROM staging.people").fetchall()[0][0]
        quarantined = con.execute("SELECT count(*) FROM quarantine.rows").fetchall()[0][0]
        dup_q = con.execute(
            "SELECT count(*) FROM quarantine.rows q JOIN raw.loads l USING (load_id) "
            "WHERE l.file_name = 'education_people.csv'"
        ).fetchall()[0][0]
    assert received == 5 + 4 + 5 == staged + quarantined == figures["rows_validated"]
    assert figures["batches_quarantined"] == 1
    assert dup_q >= 2


# ------------------------------------------------------------------ hostile values, both units
def _store_texts(settings) -> list[tuple[str, str]]:
    """(where, text) for every VARCHAR/JSON value of every table of the unit's store."""
    found = []
    with connect(settings) as con:
        cols = con.execute(
            "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
            "WHERE t.table_type = 'BASE TABLE' AND (c.data_type LIKE 'VARCHAR%' "
            "OR c.data_type = 'JSON')"
        ).fetchall()
        assert cols
        for schema, table, column in cols:
            values = con.execute(
                f'SELECT CAST("{column}" AS VARCHAR) FROM "{schema}"."{table}" '
                f'WHERE "{column}" IS NOT NULL'
            ).fetchall()
            found += [(f"{schema}.{table}.{column}", v[0]) for v in values]
    return found


def _unit_files(settings) -> list[Path]:
    """Every file of the unit's quarantine folder, outputs (Data Docs) and GX project."""
    roots = (settings.quarantine_dir, settings.outputs_dir, settings.gx_root / "gx")
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def _forms(value: str) -> set[bytes]:
    """The ways a value could be written down: as is, JSON-escaped, HTML-escaped."""
    import html
    import json

    return {
        value.encode("utf-8"),
        json.dumps(value)[1:-1].encode("utf-8"),
        html.escape(value).encode("utf-8"),
    }


def _assert_nowhere(settings, *values: str) -> None:
    """No value appears in any text column of the unit's store, nor in any file under its
    quarantine folder, outputs or GX project (nor in the store's bytes on disk)."""
    texts = _store_texts(settings)
    files = _unit_files(settings)
    for value in values:
        for where, text in texts:
            assert value not in text, f"{where} holds the value"
            assert value.lower() not in text.lower(), f"{where} holds the value"
        forms = _forms(value)
        for path in files:
            data = path.read_bytes()
            for form in forms:
                assert form not in data, f"{path} holds the value"
        store = settings.warehouse_path
        for p in (store, store.with_name(store.name + ".wal")):
            if p.exists():
                assert value.encode("utf-8") not in p.read_bytes(), f"{p.name} holds the value"


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """One hub and one linkage unit shared by the hostile-value cases (each case delivers its
    own file in its own landing subfolder; Great Expectations is set up once per unit)."""
    from joinedup.config import Settings

    hub = Settings.from_env(tmp_path_factory.mktemp("hostile"))
    hub.ensure_dirs()
    return {"hub": hub, "linkage": _linkage(hub)}


def _hostile(settings, path: Path, row: int, column: str, value: str) -> str:
    """Ingest and validate the landing file `path` with `value` in `column` of data row `row`
    at the unit of `settings`; assert it was refused whole or the value not stored, and that the
    value is nowhere.  Returns "refused" or "not stored"."""
    from expectations import validate

    name = path.name
    file_hash = ingest.file_sha256(path)
    out = ingest.run(settings)
    validate.run(settings)
    refusals = _rows(
        settings, "SELECT reason, stored_path, load_id FROM quarantine.files WHERE file_hash = ?",
        [file_hash],
    )  # fmt: skip
    loads = _rows(settings, "SELECT load_id FROM raw.loads WHERE file_hash = ?", [file_hash])
    if out["files_refused_plaintext"]:
        # refused whole: only hash, name and reason; the landing copy deleted, no copy kept
        assert not loads
        assert len(refusals) == 1, refusals
        reason, stored, load_id = refusals[0]
        assert stored is None and load_id is None
        assert f"{name} row {row}: column {column}" in reason and "(rule: plaintext)" in reason
        assert value not in reason
        assert not path.exists()
        assert not (settings.quarantine_dir / file_hash[:16]).exists()
        outcome = "refused"
    else:
        # loaded, the value not stored: NULL in raw, where/what kind in quarantine.scrubbed, and
        # the row quarantined by validation with the rule, without the value
        assert out["values_not_stored"] >= 1
        assert len(loads) == 1
        load_id = loads[0][0]
        kind = contract.parse_file_name(name)[1]
        stored = _rows(
            settings,
            f'SELECT "{column}" FROM raw.{kind} WHERE load_id = ? AND row_number = ?',
            [load_id, row],
        )
        assert stored == [(None,)]
        scrubbed = _rows(
            settings,
            "SELECT row_number, column_name, kind FROM quarantine.scrubbed WHERE load_id = ?",
            [load_id],
        )
        assert (row, column) in {(r[0], r[1]) for r in scrubbed}
        assert all(value not in r[2] for r in scrubbed)
        quarantined = _rows(
            settings,
            "SELECT rules, reason FROM quarantine.rows WHERE load_id = ? AND row_number = ?",
            [load_id, row],
        )
        assert len(quarantined) == 1
        rules, reason = quarantined[0]
        assert "values_stored" in rules
        assert reason.startswith(f"{name} row {row}:") and value not in reason
        staged = _rows(
            settings,
            f"SELECT count(*) FROM staging.{kind} WHERE load_id = ? AND row_number = ?",
            [load_id, row],
        )
        assert staged == [(0,)]
        assert not refusals or all(value not in r[0] for r in refusals)
        outcome = "not stored"
    _assert_nowhere(settings, value)
    return outcome


_HEX = tok("hostile", 1) + tok("hostile", 2) + tok("hostile", 3) + tok("hostile", 4)
#: hostile values: (id, value, expected outcome or None when either is correct)
HOSTILE_VALUES: list[tuple[str, str, str | None]] = [
    ("accented-renee", "Renée", "refused"),
    ("accented-zoe", "Zoë", "refused"),
    ("decomposed-zoe", "Zoe\u0308", "refused"),
    ("cyrillic", "Анастасия", "refused"),
    ("cjk", "王小明", "refused"),
    ("apostrophe", "O’Brien-Smith", "refused"),
    ("nhs-dashes", "943-476-5919", "refused"),
    ("nhs-dots", "943.476.5919", "refused"),
    ("nhs-slashes", "943/476/5919", "refused"),
    ("date-8-digits", "20140309", "refused"),
    ("date-dmy-dots", "09.03.2014", "refused"),
    ("hex-20", _HEX[:20], None),
    ("hex-upper", _HEX[32:64].upper(), None),
    ("hex-with-space", _HEX[64:80] + " " + _HEX[80:96], None),
    ("bloom-truncated", _HEX[:100], None),
]
_VALUES = pytest.mark.parametrize(
    ("value", "expected"), [v[1:] for v in HOSTILE_VALUES], ids=[v[0] for v in HOSTILE_VALUES]
)


def _case_dir(settings, *parts: object) -> Path:
    """A landing subfolder of its own for one case (files are found recursively)."""
    return settings.landing_dir / "-".join(str(p) for p in parts).replace("/", "_")


def _check(settings, path, row, column, value, expected):
    outcome = _hostile(settings, path, row, column, value)
    if expected:
        assert outcome == expected


@pytest.mark.parametrize("column", ["first_name_bf", "dob_token", "nhs_token"])
@_VALUES
def test_hostile_values_in_people_encodings_never_stored(units, column, value, expected):
    lk = units["linkage"]
    rows = people_rows("health", 6)
    rows[3][column] = value
    folder = _case_dir(lk, column, tok(value))
    path = write_csv(folder / "health_people.csv", rows, contract.PEOPLE_COLUMNS)
    _check(lk, path, 4, column, value, expected)


@pytest.mark.parametrize(
    ("file_kind", "column"),
    [("attributes", "record_token"), ("events", "event_token"), ("events", "record_token")],
)
@_VALUES
def test_hostile_values_in_hub_tokens_never_stored(units, file_kind, column, value, expected):
    hub = units["hub"]
    folder = _case_dir(hub, file_kind, column, tok(value))
    if file_kind == "events":  # with its attributes, so only the hostile row is at fault
        write_csv(folder / "police_attributes.csv", attribute_rows("police", 3),
                  contract.ATTRIBUTE_COLUMNS)  # fmt: skip
        rows = event_rows("police", 3)
    else:
        rows = attribute_rows("health", 6)
    rows[3][column] = value
    name = contract.file_name("police" if file_kind == "events" else "health", file_kind)
    path = write_csv(folder / name, rows, contract.columns_for(file_kind))
    _check(hub, path, 4, column, value, expected)


@pytest.mark.parametrize(
    ("unit", "name", "column", "value"),
    [
        ("linkage", "health_people.csv", "record_token", "Renée"),
        ("linkage", "health_people.csv", "postcode_token", "943-476-5919"),
        ("linkage", "health_people.csv", "upn_token", "A123456789012"),
        ("linkage", "health_people.csv", "dob_swap_token", _HEX[:31].upper()),
        ("linkage", "health_people.csv", "birth_year_month", "20140309"),
        ("linkage", "health_people.csv", "birth_year_month", "2014-03-09"),
        ("linkage", "health_people.csv", "postcode_sector", "LS6 2AB"),
        ("linkage", "health_people.csv", "postcode_sector", "Renée"),
        ("hub", "health_attributes.csv", "birth_year", "20140309"),
        ("hub", "health_attributes.csv", "birth_year", "09/03/2014"),
        ("hub", "health_attributes.csv", "ward_code", "943-476-5919"),
        ("hub", "health_attributes.csv", "ward_code", "Zoë"),
        ("hub", "health_attributes.csv", "ward_code", "LS6 2AB"),
        ("hub", "health_events.csv", "event_month", "20140309"),
        ("hub", "health_events.csv", "event_month", "2014-03-09"),
        ("hub", "health_events.csv", "event_month", "王小明"),
        # coded clear columns (a shifted column, a free-text entry): plaintext is not stored
        ("linkage", "health_people.csv", "sex", "943-476-5919"),
        ("hub", "health_attributes.csv", "sex", "Renée"),
        ("hub", "health_attributes.csv", "ethnicity", "O’Brien-Smith"),
        ("hub", "health_attributes.csv", "ethnicity", "JU4 7QB"),
        ("hub", "health_events.csv", "event_type", "Анастасия"),
        ("hub", "health_events.csv", "value", "943 476 5919"),
        ("hub", "health_events.csv", "extract_date", "Zoë"),
    ],
)
def test_hostile_values_in_other_checked_columns_never_stored(units, unit, name, column, value):
    s = units[unit]
    kind = contract.parse_file_name(name)[1]
    rows = {"people": people_rows, "attributes": attribute_rows}.get(kind, event_rows)("health", 6)
    rows[3][column] = value
    path = write_csv(_case_dir(s, column, tok(value)) / name, rows, contract.columns_for(kind))
    _hostile(s, path, 4, column, value)


def _refused_for_separation(s, name: str, path: Path) -> None:
    reasons = _rows(
        s, "SELECT reason, stored_path, load_id FROM quarantine.files WHERE file_name = ?", [name]
    )
    assert len(reasons) == 1, reasons
    reason, stored, load_id = reasons[0]
    assert name in reason and "(rule: separation)" in reason
    assert stored is None and load_id is None
    assert not path.exists()  # the landing copy is deleted


def test_hub_files_at_the_linkage_unit_are_refused_and_not_kept(settings):
    lk = _linkage(settings)
    attributes, events = write_agency(lk.landing_dir, "police", n_people=3)
    values = [r["event_token"] for r in event_rows("police", 3)] + ["W900001"]
    out = ingest.run(lk)
    assert out["files_loaded"] == 0 and out["files_refused_plaintext"] == 2
    _refused_for_separation(lk, attributes.name, attributes)
    _refused_for_separation(lk, events.name, events)
    assert _rows(lk, "SELECT count(*) FROM raw.loads")[0][0] == 0
    assert not [p for p in lk.quarantine_dir.rglob("*") if p.is_file()]
    with connect(lk) as con:  # the linkage unit has no such tables at all
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert not tables & {"attributes", "events"}
    _assert_nowhere(lk, *values)
    again = ingest.run(lk)  # remembered by hash; nothing to do
    assert again["files_loaded"] == 0 and again["files_quarantined"] == 0


def test_people_file_at_the_hub_is_refused_and_not_kept(settings):
    path = write_people(settings.landing_dir, "education", n_people=4)
    rows = people_rows("education", 4)
    values = [r[c] for r in rows for c in ("dob_token", "postcode_token", "nhs_token")]
    values.append("JU1 2")
    out = ingest.run(settings)
    assert out["files_loaded"] == 0 and out["files_refused_plaintext"] == 1
    _refused_for_separation(settings, path.name, path)
    assert _rows(settings, "SELECT count(*) FROM raw.loads")[0][0] == 0
    assert not [p for p in settings.quarantine_dir.rglob("*") if p.is_file()]
    with connect(settings) as con:  # the hub has no people table at all
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'"
            ).fetchall()
        }
    assert "people" not in tables
    _assert_nowhere(settings, *values)


def test_v1_people_file_at_the_hub_is_refused_and_not_kept(settings):
    """A contract v1 people file (encodings and clear attributes together) sent to the hub."""
    rows = people_rows("health", 3)
    for r in rows:
        r.update(first_name_token=tok("fn", r["record_token"]), ethnicity="WHITE")
    cols = [*contract.PEOPLE_COLUMNS, "first_name_token", "ethnicity"]
    path = write_csv(settings.landing_dir / "health_people.csv", rows, cols)
    out = ingest.run(settings)
    assert out["files_loaded"] == 0 and out["files_refused_plaintext"] == 1
    _refused_for_separation(settings, path.name, path)
    _assert_nowhere(
        settings, *(r["first_name_token"] for r in rows), *(r["nhs_token"] for r in rows)
    )


# ------------------------------------------------------------------ property-based fuzzing
_MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("truncate"), st.integers(min_value=1, max_value=10_000)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete_line"), st.integers(0, 50)),
        st.tuples(st.just("duplicate_line"), st.integers(0, 50)),
        st.tuples(st.just("replace"), st.sampled_from([b",", b"\n", b'"', b"-"]),
                  st.sampled_from([b";", b"\r\n", b"", b'""', b",", b"\x00", b"\xff"])),
        st.tuples(st.just("bom"),),
    ),
    min_size=1,
    max_size=3,
)  # fmt: skip


def _mutate(data: bytes, mutations: list[tuple]) -> bytes:
    for m in mutations:
        if m[0] == "truncate":
            data = data[: max(1, len(data) - m[1] % max(1, len(data)))]
        elif m[0] == "insert":
            at = m[1] % (len(data) + 1)
            data = data[:at] + m[2] + data[at:]
        elif m[0] in ("delete_line", "duplicate_line"):
            lines = data.split(b"\n")
            i = m[1] % len(lines)
            lines = (
                lines[:i] + lines[i + 1 :] if m[0] == "delete_line" else lines[: i + 1] + lines[i:]
            )
            data = b"\n".join(lines)
        elif m[0] == "replace":
            data = data.replace(m[1], m[2], 1)
        elif m[0] == "bom":
            data = b"\xef\xbb\xbf" + data
    return data


@hsettings(
    max_examples=int(os.environ.get("JOINEDUP_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=_MUTATIONS)
def test_fuzzed_deliveries_load_whole_or_not_at_all(tmp_path_factory, mutations):
    from joinedup.config import Settings

    home = tmp_path_factory.mktemp("fuzz")
    s = Settings.from_env(home)
    s.ensure_dirs()
    good = write_csv(home / "good.csv", event_rows("police", 6), contract.EVENT_COLUMNS)
    data = _mutate(good.read_bytes(), mutations)
    target = s.landing_dir / "police_events.csv"
    target.write_bytes(data)
    out = ingest.run(s)
    loaded, reasons = _file_outcome(s, "police_events.csv")
    if out["files_loaded"]:
        # loaded: every data row of the file is in raw (none lost, none added)
        import csv
        import io

        text = data.decode("utf-8-sig")
        n_rows = sum(1 for r in csv.reader(io.StringIO(text)) if r) - 1
        assert loaded == n_rows == out["rows_loaded"]
        assert not reasons
        event("loaded whole")
    else:
        # refused: nothing loaded, one reason naming the file and a rule
        assert loaded == 0 and len(reasons) == 1
        assert "police_events.csv" in reasons[0] and "(rule: " in reasons[0]
        event("refused: " + reasons[0].rsplit("(rule: ", 1)[1].rstrip(")"))
    again = ingest.run(s)  # idempotent either way
    assert again["files_loaded"] == 0 and again["files_quarantined"] == 0
    shutil.rmtree(home, ignore_errors=True)
