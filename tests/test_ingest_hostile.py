"""Hostile and broken deliveries through the real ingest (and validate) path.

Each case checks the error names the file, the row where there is one, and the rule; that the
file became no load at all or loaded whole (no partial load); and that every row is accounted
for (rows received = rows staged + rows quarantined).  A property-based test then throws
generated corruptions of a good file at ingest and checks the same invariants for each.
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
from tests.landing_fixtures import event_rows, people_rows, write_agency, write_csv
from warehouse import ingest
from warehouse.db import connect


def _rows(settings, sql: str, params: list | None = None) -> list[tuple]:
    with connect(settings) as con:
        return con.execute(sql, params or []).fetchall()


def _file_outcome(settings, name: str) -> tuple[int, list[str]]:
    """(raw rows loaded from files called `name`, quarantine reasons for them)."""
    loaded = _rows(
        settings,
        "SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM raw.people p JOIN raw.loads "
        "l USING (load_id) WHERE l.file_name = ? UNION ALL SELECT count(*) FROM raw.events e "
        "JOIN raw.loads l USING (load_id) WHERE l.file_name = ?)",
        [name, name],
    )[0][0]
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
    (settings.landing_dir / "health_people.csv").write_bytes(b"")
    write_csv(settings.landing_dir / "health_events.csv", [], contract.EVENT_COLUMNS)
    out = ingest.run(settings)
    assert out["files_quarantined"] == 2 and out["files_loaded"] == 0
    reasons = dict(_rows(settings, "SELECT file_name, reason FROM quarantine.files"))
    assert (
        "empty file" in reasons["health_people.csv"]
        and "rule: header" in reasons["health_people.csv"]
    )
    assert "header only" in reasons["health_events.csv"]
    assert "rule: rows" in reasons["health_events.csv"]


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
        ("record_token", "Olivia", "name or text"),
        ("dob_token", "2014-03-09", "date"),
        ("postcode_token", "LS6 2AB", "postcode"),
        ("nhs_token", "943 476 5919", "number or id"),
        ("birth_year_month", "2014-03-09", "full date of birth"),
        ("postcode_sector", "LS6 2AB", "full postcode"),
        ("surname_bf", "Smith", "name or text"),
    ],
)
def test_plaintext_where_encodings_belong_is_refused_and_not_kept(settings, column, value, kind):
    rows = people_rows("health", 6)
    rows[3][column] = value
    path = write_csv(settings.landing_dir / "health_people.csv", rows, contract.PEOPLE_COLUMNS)
    out = ingest.run(settings)
    assert out["files_refused_plaintext"] == 1 and out["files_loaded"] == 0
    reason = _rows(settings, "SELECT reason, stored_path FROM quarantine.files")
    assert len(reason) == 1 and reason[0][1] is None  # no copy kept at the hub
    assert f"row 4: column {column}" in reason[0][0] and kind in reason[0][0]
    assert value not in reason[0][0]
    assert not path.exists()  # the landing copy is deleted
    assert not list(settings.quarantine_dir.rglob("*.csv"))
    assert _rows(settings, "SELECT count(*) FROM raw.people")[0][0] == 0


def test_a_raw_extract_sent_by_mistake_is_refused(settings):
    raw = [
        {"source_id": "H0000001", "first_name": "Amelia", "surname": "Jones",
         "dob": "2015-01-02", "sex": "F", "postcode": "JU1 2AB", "extract_date": "2026-10-01"}
    ]  # fmt: skip
    write_csv(settings.landing_dir / "health_people.csv", raw, contract.RAW_PEOPLE_COLUMNS)
    out = ingest.run(settings)
    assert out["files_refused_plaintext"] == 1
    assert "raw-extract column" in _rows(settings, "SELECT reason FROM quarantine.files")[0][0]


def test_extra_missing_and_duplicated_rows_reach_validation_whole(settings):
    """Readable files with the wrong columns or duplicated rows load whole into raw; validation
    then quarantines the batch (columns) or the rows (duplicates), and the counts add up."""
    from expectations import validate

    write_agency(settings.landing_dir, "health", n_people=5)
    people = people_rows("police", 4)
    write_csv(settings.landing_dir / "police_people.csv", people,
              [*contract.PEOPLE_COLUMNS, "unexpected"])  # fmt: skip
    events = event_rows("police", 4)
    write_csv(settings.landing_dir / "police_events.csv", events,
              [c for c in contract.EVENT_COLUMNS if c != "event_type"])  # fmt: skip
    dup_rows = event_rows("education", 3)
    write_csv(settings.landing_dir / "education_events.csv", dup_rows + dup_rows[:2],
              contract.EVENT_COLUMNS)  # fmt: skip
    write_csv(settings.landing_dir / "education_people.csv", people_rows("education", 3),
              contract.PEOPLE_COLUMNS)  # fmt: skip
    ingest.run(settings)
    figures = validate.run(settings)
    for name, n in (("police_people.csv", 4), ("police_events.csv", 12)):
        loaded, reasons = _file_outcome(settings, name)
        assert loaded == n  # whole in raw, as received
        assert len(reasons) == 1 and name in reasons[0]  # and the whole batch quarantined
    assert "event_type" in _file_outcome(settings, "police_events.csv")[1][0]
    assert "unexpected" in _file_outcome(settings, "police_people.csv")[1][0]
    with connect(settings) as con:
        received = con.execute(
            "SELECT (SELECT count(*) FROM raw.people) + (SELECT count(*) FROM raw.events)"
        ).fetchall()[0][0]
        staged = con.execute(
            "SELECT (SELECT count(*) FROM staging.people) + (SELECT count(*) FROM staging.events)"
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
