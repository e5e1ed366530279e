"""The clerical review queue reaches the analysts, and their decisions reach the linkage unit.

* Queue: the link stage's hand-off writes `review_queue.csv` (no token, ever); `assemble` checks
  it row by row (file, row, rule; never a value) into `linked.link_review`; publish puts it in
  the analysts' snapshot as `link_review`, through the GX suites and the raw-value guard.
* Decisions: `link_decisions_*.csv` files (the dashboard's format) are imported by
  `joinedup linkage review import` or at the start of a link run: a good file is applied (latest
  decision wins, a re-import changes nothing) and filed under `processed/`; a bad one under
  `rejected/` with its reason, and nothing of it is applied.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from joinedup.config import Settings
from linkage import handoff, link, review, review_import
from tests.test_linkage import build
from tests.test_linkage_review import _cli
from warehouse import assemble, publish
from warehouse.db import connect
from warehouse.read_models.builder import snapshot_paths
from warehouse.read_models.checks import assert_no_raw_values

COLUMNS = list(review_import.DECISION_FILE_COLUMNS)


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Settings:
    """A 400-person county linked once (full) and assembled at the hub."""
    s = Settings.from_env(tmp_path_factory.mktemp("review_handoff") / "home")
    s.ensure_dirs()
    build(s, "fixture")
    link.run(s.for_unit("linkage"), run_id="r1", mode="full", report=False)
    assemble.run(s)
    return s


@pytest.fixture
def home(county, tmp_path) -> Settings:
    """A private copy of the linked county (tests below change its decisions)."""
    target = tmp_path / "home"
    shutil.copytree(county.home, target)
    s = Settings.from_env(target)
    s.review_decisions_inbox.mkdir(parents=True, exist_ok=True)
    return s


def _queue(s: Settings) -> pd.DataFrame:
    with connect(s.for_unit("linkage")) as con:
        return con.execute("SELECT * FROM linked.review_queue ORDER BY rank").df()


def _decisions(s: Settings) -> pd.DataFrame:
    with connect(s.for_unit("linkage")) as con:
        return con.execute("SELECT * FROM linked.review_decisions ORDER BY decision_id").df()


def _write(path: Path, rows: list[tuple], terminator: str = "\n") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator=terminator)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return path


def _child(s: Settings, agency: str, token: str) -> str:
    with connect(s.for_unit("linkage")) as con:
        return con.execute(
            "SELECT child_id FROM linked.records WHERE agency = ? AND record_token = ?",
            [agency, token],
        ).fetchone()[0]


# ---- the queue: linkage unit -> hub -> analysts ---------------------------------------------


def test_the_handoff_queue_holds_no_token(county):
    lu = county.for_unit("linkage")
    with connect(lu) as con:
        queued = con.execute("SELECT count(*) FROM linked.review_queue").fetchone()[0]
        encodings = set()
        for col in ("record_token", "first_name_bf", "surname_bf", "dob_token", "nhs_token",
                    "upn_token", "postcode_token"):  # fmt: skip
            encodings |= {r[0] for r in con.execute(f"SELECT {col} FROM staging.people").fetchall()}
    encodings.discard(None)
    assert queued > 0
    for folder in (county.handoff_outbox, county.handoff_inbox):
        path = folder / handoff.REVIEW_QUEUE_FILE
        text = path.read_text(encoding="utf-8")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert tuple(frame.columns) == handoff.REVIEW_QUEUE_COLUMNS
        assert not [c for c in frame.columns if "token" in c or c.endswith("_bf")]
        assert len(frame) == queued
        assert not re.search(r"[0-9a-fA-F]{16,}", text), "no token-like hex run"
        assert not [v for v in encodings if v and v in text]
        assert set(frame["decision"]) == {""}  # nothing decided yet
        assert frame["queued_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    with connect(county) as con:
        hub = con.execute("SELECT * FROM linked.link_review ORDER BY rank").df()
    assert len(hub) == queued and hub["decision"].isna().all()
    assert list(hub["rank"]) == list(range(1, queued + 1))


def _broken(county: Settings, tmp_path: Path, row: int, column: str, value: str) -> Path:
    frame = pd.read_csv(
        county.handoff_inbox / handoff.REVIEW_QUEUE_FILE, dtype=str, keep_default_na=False
    )
    frame.loc[row - 1, column] = value
    path = tmp_path / handoff.REVIEW_QUEUE_FILE
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("match_probability", "1.7", "match_probability"),
        ("pair_id", "R12345", "pair_id"),
        ("child_id_l", "Cffffffffff", "child_id_l"),  # well formed, not in the mapping
        ("model_side", "maybe", "model_side"),
        ("decision", "accepted", "decision"),
        ("evidence_json", '{"dob": {"level": "0123456789abcdef01", "weight": 1}}', "evidence_json"),
        ("queued_at", "yesterday", "queued_at"),
    ],
)
def test_assemble_refuses_a_bad_queue_row_naming_file_row_and_rule(
    county, tmp_path, column, value, rule
):
    mapping = assemble.read_mapping(county.handoff_inbox / handoff.MAPPING_FILE)
    path = _broken(county, tmp_path, 2, column, value)
    with pytest.raises(assemble.HandoffError) as err:
        assemble.read_review_queue(path, mapping)
    message = str(err.value)
    assert message.startswith("review_queue.csv row 2: ") and f"(rule: {rule})" in message
    assert value not in message


def test_assemble_refuses_a_token_column_and_reads_an_absent_queue_as_empty(county, tmp_path):
    mapping = assemble.read_mapping(county.handoff_inbox / handoff.MAPPING_FILE)
    path = _broken(county, tmp_path, 1, "run_id", "r1")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.insert(3, "record_token_l", "x")
    frame.to_csv(path, index=False)
    with pytest.raises(assemble.HandoffError, match=r"row 0: .*\(rule: header\)"):
        assemble.read_review_queue(path, mapping)
    assert assemble.read_review_queue(tmp_path / "absent.csv", mapping).empty


def test_a_bad_queue_stops_assemble_and_keeps_the_hub(home, tmp_path):
    with connect(home) as con:
        before = con.execute("SELECT count(*) FROM linked.link_review").fetchone()[0]
    bad = _broken(home, tmp_path, 3, "match_probability", "-0.1")
    shutil.copyfile(bad, home.handoff_inbox / handoff.REVIEW_QUEUE_FILE)
    with pytest.raises(assemble.HandoffError, match="row 3"):
        assemble.run(home)
    with connect(home) as con:
        assert con.execute("SELECT count(*) FROM linked.link_review").fetchone()[0] == before
    (home.handoff_inbox / handoff.REVIEW_QUEUE_FILE).unlink()
    assert assemble.run(home)["review_queue"] == 0  # an older linkage unit: no queue
    with connect(home) as con:
        assert con.execute("SELECT count(*) FROM linked.link_review").fetchone()[0] == 0


def test_publish_gives_the_analysts_the_queue(home):
    figures = publish.run(home)
    assert set(figures["checks"].values()) <= {"passed", "warnings"}, figures["checks"]
    assert figures["checks"]["published_analysts.link_review"] in ("passed", "warnings")
    path = snapshot_paths(home)["analysts"]
    with connect(home) as con:
        hub = con.execute("SELECT count(*) FROM linked.link_review").fetchone()[0]
        assert_no_raw_values(path, con)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT * FROM link_review ORDER BY rank").df()
        manifest = dict(con.execute("SELECT table_name, n_rows FROM manifest").fetchall())
    assert len(rows) == hub == manifest["link_review"] > 0
    assert not [c for c in rows.columns if "token" in c]
    for name in ("planners", "engineers"):
        with duckdb.connect(str(snapshot_paths(home)[name]), read_only=True) as con:
            cols = {
                r[0] for r in con.execute("SELECT column_name FROM duckdb_columns()").fetchall()
            }
        assert "pair_id" not in cols


# ---- decisions: dashboard -> linkage unit ---------------------------------------------------


def test_import_applies_a_good_file_latest_wins_and_reimport_changes_nothing(home, tmp_path):
    q = _queue(home)
    a, b = q.iloc[0], q.iloc[1]
    rows = [
        ("D0001", a["pair_id"], "accept", "analyst one", "school confirms", "2026-10-02T09:00:00Z"),
        ("D0002", a["pair_id"], "reject", "analyst two", "", "2026-10-02T10:00:00+00:00"),
        ("D0003", b["pair_id"], "accept", " analyst one ", "same GP", "2026-10-02T09:30:00Z"),
    ]
    path = _write(tmp_path / "link_decisions_batch1.csv", rows)
    rc, out = _cli(home, "linkage", "review", "import", "--file", str(path))
    assert rc == 0 and out["imported_decisions"] == 3 and out["rejected_files"] == 0
    assert not path.exists() and (tmp_path / "processed" / path.name).exists()
    d = _decisions(home).set_index("decision_id")
    assert list(d.index) == ["D0001", "D0002", "D0003"]
    assert (
        d.loc["D0003", "reviewer"] == "analyst one"
        and d.loc["D0001", "reason"] == "school confirms"
    )
    assert pd.isna(d.loc["D0002", "reason"])
    assert str(d.loc["D0002", "decided_at"]) == "2026-10-02 10:00:00"
    with connect(home.for_unit("linkage")) as con:
        latest = review.latest_decisions(con).set_index("pair_id")["decision"]
    assert latest[a["pair_id"]] == "reject" and latest[b["pair_id"]] == "accept"
    # the same decisions again, through the inbox (as Python's csv writes by default, CRLF and
    # a blank last line): every decision id is already held
    _write(home.review_decisions_inbox / "link_decisions_batch1.csv", [*rows, ()], "\r\n")
    rc, out = _cli(home, "linkage", "review", "import")
    assert rc == 0 and out["imported_decisions"] == 0 and out["skipped_decisions"] == 3
    assert len(_decisions(home)) == 3
    assert (home.review_decisions_inbox / "processed" / "link_decisions_batch1.csv").exists()
    with connect(home.for_unit("linkage")) as con:
        imports = con.execute(
            "SELECT status, n_applied, n_skipped FROM linked.review_imports ORDER BY imported_at"
        ).fetchall()
    assert imports == [("processed", 3, 0), ("processed", 0, 3)]


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        (("D9", "Rffffffffffff", "accept", "a", "", "2026-10-02T09:00:00Z"), "known_pair"),
        (("D9", "{pair}", "maybe", "a", "", "2026-10-02T09:00:00Z"), "decision"),
        (("D9", "{pair}", "accept", "  ", "", "2026-10-02T09:00:00Z"), "reviewer"),
        (("D9", "{pair}", "accept", "a", "", "02/10/2026 09:00"), "decided_at"),
        (("D9", "{pair}", "accept", "a", "", "2026-10-02T09:00:00"), "decided_at"),  # no zone
        (("D9", "{pair}", "accept", "a", "", "2999-01-01T00:00:00Z"), "decided_at"),
        (("D9", "{pair}", "accept", "a", "dob 03/04/2015", "2026-10-02T09:00:00Z"), "reason"),
        (("D 9", "{pair}", "accept", "a", "", "2026-10-02T09:00:00Z"), "decision_id"),
        (("D1", "{pair}", "accept", "a", "", "2026-10-02T09:00:00Z"), "unique"),
    ],
)
def test_a_bad_file_is_rejected_whole_with_file_row_and_rule(home, row, rule):
    pair = _queue(home).iloc[0]["pair_id"]
    good = ("D1", pair, "accept", "analyst", "", "2026-10-02T08:00:00Z")
    bad = tuple(v.replace("{pair}", pair) for v in row)
    path = _write(home.review_decisions_inbox / "link_decisions_bad.csv", [good, bad])
    rc, _ = _cli(home, "linkage", "review", "import")
    assert rc == 2
    assert _decisions(home).empty, "nothing of a bad file is applied"
    assert not path.exists()
    kept = home.review_decisions_inbox / "rejected" / path.name
    reason = (kept.parent / (kept.name + ".error.txt")).read_text(encoding="utf-8")
    assert kept.exists() and reason.startswith("link_decisions_bad.csv row 2: ")
    assert f"(rule: {rule})" in reason
    for value in bad[1:]:
        if len(value.strip()) > 3 and value not in ("accept",):
            assert value not in reason, "the reason never quotes a value"
    with connect(home.for_unit("linkage")) as con:
        status, error = con.execute("SELECT status, error FROM linked.review_imports").fetchone()
    assert status == "rejected" and error == reason.strip()


def test_a_bad_header_or_name_is_rejected(home, tmp_path):
    with connect(home.for_unit("linkage")) as con:
        path = tmp_path / "link_decisions_x.csv"
        path.write_text("decision_id,pair_id,decision\nD1,R000000000000,accept\n", "utf-8")
        with pytest.raises(review_import.DecisionsFileError, match=r"row 0: .*\(rule: header\)"):
            review_import.check_file(con, path)
        other = tmp_path / "decisions.csv"
        other.write_text(",".join(COLUMNS) + "\n", "utf-8")
        with pytest.raises(review_import.DecisionsFileError, match=r"\(rule: name\)"):
            review_import.check_file(con, other)


def test_the_link_run_imports_waiting_files_and_the_decisions_constrain_clustering(home):
    q = _queue(home)
    apart, together = q[~q["same_child"]], q[q["same_child"]]
    if apart.empty or together.empty:
        pytest.skip("the fixture queued no pair of each kind")
    apart, together = apart.iloc[0], together.iloc[0]
    _write(
        home.review_decisions_inbox / "link_decisions_session1.csv",
        [("Da", apart["pair_id"], "accept", "analyst", "", "2026-10-02T09:00:00Z"),
         ("Dr", together["pair_id"], "reject", "analyst", "", "2026-10-02T09:01:00Z")],
    )  # fmt: skip
    _write(
        home.review_decisions_inbox / "link_decisions_session2.csv",
        [("Dx", "Rffffffffffff", "accept", "analyst", "", "2026-10-02T09:02:00Z")],
    )
    figures = link.run(home.for_unit("linkage"), run_id="r2", report=False)
    r = figures["review"]
    assert (r["imported_files"], r["imported_decisions"], r["rejected_files"]) == (1, 2, 1)
    assert r["decisions_respected"] == 2 and r["decisions_not_respected"] == 0
    assert _child(home, apart["agency_l"], apart["record_token_l"]) == _child(
        home, apart["agency_r"], apart["record_token_r"]
    ), "the accepted pair is one child"
    assert _child(home, together["agency_l"], together["record_token_l"]) != _child(
        home, together["agency_r"], together["record_token_r"]
    ), "the rejected pair is two children"
    assert not list(home.review_decisions_inbox.glob("link_decisions_*.csv"))
    assert (home.review_decisions_inbox / "rejected" / "link_decisions_session2.csv").exists()
    # the decisions travel back to the hub with the next hand-off
    assemble.run(home)
    with connect(home) as con:
        shown = dict(
            con.execute(
                "SELECT pair_id, decision FROM linked.link_review WHERE decision IS NOT NULL"
            ).fetchall()
        )
    assert shown.get(apart["pair_id"]) == "accept"
    assert shown.get(together["pair_id"], "reject") == "reject"  # may have left the band


def test_an_opt_out_takes_its_childrens_pairs_out_of_the_queue_everywhere(home, tmp_path):
    from warehouse import rights

    pair = _queue(home).iloc[0]
    optout = tmp_path / "optout.csv"
    optout.write_text(f"agency,record_token\n{pair['agency_l']},{pair['record_token_l']}\n")
    rights.apply_optouts(home, optout, requested_by="tester", republish=False)
    child = pair["child_id_l"]
    with connect(home) as con:
        left = con.execute(
            "SELECT count(*) FROM linked.link_review WHERE child_id_l = ? OR child_id_r = ?",
            [child, child],
        ).fetchone()[0]
    assert left == 0
    for folder in (home.handoff_outbox, home.handoff_inbox):
        queue = pd.read_csv(folder / handoff.REVIEW_QUEUE_FILE, dtype=str)
        assert not (queue["child_id_l"].isin({child}) | queue["child_id_r"].isin({child})).any()
    assert pair["pair_id"] not in set(_queue(home)["pair_id"])
    # the hub's next assemble accepts the rewritten hand-off (every child id still mapped)
    assert assemble.run(home)["review_queue"] == len(queue)
