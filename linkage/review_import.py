"""Importing the clerical-review decisions made in the hub's dashboard (linkage unit).

The dashboard never writes the linkage unit's store (nor the hub's warehouse): it writes a
decisions file, which reaches `settings.review_decisions_inbox` (copied there atomically in the
embedded default; by file exchange in a deployment).  The file format is the interface, stable
and documented in docs/linkage.md ("Decisions from the dashboard"):

* name `link_decisions_<anything>.csv`, UTF-8, header exactly `DECISION_FILE_COLUMNS`
  (`decision_id,pair_id,decision,reviewer,reason,decided_at`);
* `decision_id` a unique string (`[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}`, e.g. `D` + hex), the
  idempotency key; `pair_id` a pair of the queue (`R` + 12 hex); `decision` accept | reject;
  `reviewer` a non-empty user name; `reason` free text, may be empty; `decided_at` ISO-8601 with
  a UTC designator (`Z` or an offset, converted to UTC).

Owns the format constants, `check_file` (every row checked before anything is applied: file, row
and rule in the error, never a value), `import_file` (apply a good file in one transaction via
`linkage.review.insert_decision`, skipping decision ids already held, then move it to
`processed/`; move a bad one to `rejected/` with `<name>.error.txt`; nothing is lost, and every
file handled is a row of `linked.review_imports`) and `import_inbox` (every waiting file of a
folder; the link stage calls it at the start of each run).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import uuid
from pathlib import Path

import duckdb

from linkage import review
from linkage.handoff import PAIR_ID_PATTERN
from warehouse.db import transaction

DECISION_FILE_COLUMNS: tuple[str, ...] = (
    "decision_id", "pair_id", "decision", "reviewer", "reason", "decided_at",
)  # fmt: skip
FILE_GLOB = "link_decisions_*.csv"
PROCESSED, REJECTED = "processed", "rejected"
_NAME = re.compile(r"link_decisions_.+\.csv")
_DECISION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_PAIR_ID = re.compile(PAIR_ID_PATTERN)
#: a reason must not hold a date or a long number (a guard for "never a name, date or number of
#: a child"; names cannot be told from words)
_DATE_OR_NUMBER = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{6,}")
#: a decision dated further ahead than this would outrank every later one: refused
FUTURE_SKEW = dt.timedelta(hours=1)


class DecisionsFileError(ValueError):
    """A decisions file broke a rule: '<file> row <n>: <rule text> (rule: <rule>)', no value."""


def _fail(name: str, row: int, text: str, rule: str) -> DecisionsFileError:
    return DecisionsFileError(f"{name} row {row}: {text} (rule: {rule})")


def _utc(text: str) -> dt.datetime | None:
    """ISO-8601 with a UTC designator or offset -> naive UTC; None when malformed or naive."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None or "T" not in text:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def check_file(
    con: duckdb.DuckDBPyConnection, path: Path, now: dt.datetime | None = None
) -> tuple[list[tuple], int, int]:
    """Check a decisions file whole.  Returns (decisions to append as `(decision_id, pair_id,
    identity, decision, reviewer, reason, decided_at)`, rows read, decision ids already held).
    Raises DecisionsFileError at the first bad row."""
    name = path.name
    if not _NAME.fullmatch(name):
        raise _fail(name, 0, "a decisions file is named link_decisions_<anything>.csv", "name")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _fail(name, 0, "the file must be UTF-8 text", "encoding") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        raise _fail(name, 0, "the file is not well-formed CSV", "csv") from None
    if not rows or tuple(rows[0]) != DECISION_FILE_COLUMNS:
        raise _fail(name, 0, f"columns must be exactly {','.join(DECISION_FILE_COLUMNS)}", "header")
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    out: list[tuple] = []
    seen: set[str] = set()
    skipped = 0
    data = rows[1:]
    for i, fields in enumerate(data, start=1):
        if not fields:  # a blank line (e.g. at the end of the file)
            continue
        if len(fields) != len(DECISION_FILE_COLUMNS):
            raise _fail(name, i, f"a row has exactly {len(DECISION_FILE_COLUMNS)} fields", "fields")
        decision_id, pair, decision, reviewer, reason, decided = fields
        reviewer = reviewer.strip()
        if not _DECISION_ID.fullmatch(decision_id):
            raise _fail(name, i, "decision_id must be 1-64 letters, digits, _ . : -", "decision_id")
        if decision_id in seen:
            raise _fail(name, i, "decision_id must be unique in the file", "unique")
        seen.add(decision_id)
        if not _PAIR_ID.fullmatch(pair):
            raise _fail(name, i, "pair_id must be R and 12 lowercase hex characters", "pair_id")
        if decision not in review.DECISIONS:
            raise _fail(name, i, "decision must be accept or reject", "decision")
        if not reviewer or len(reviewer) > review.REVIEWER_MAX:
            raise _fail(
                name,
                i,
                f"reviewer must be a name of 1-{review.REVIEWER_MAX} characters",
                "reviewer",
            )
        if len(reason) > review.REASON_MAX or _DATE_OR_NUMBER.search(reason):
            raise _fail(
                name, i, f"reason must be at most {review.REASON_MAX} characters and hold no "
                "date or long number", "reason",
            )  # fmt: skip
        at = _utc(decided)
        if at is None:
            raise _fail(name, i, "decided_at must be an ISO-8601 UTC timestamp", "decided_at")
        if at > now + FUTURE_SKEW:
            raise _fail(name, i, "decided_at must not be in the future", "decided_at")
        identity = review.pair_identity(con, pair)
        if identity is None:
            raise _fail(name, i, "pair_id is not a pair the linkage unit queued", "known_pair")
        held = con.execute(
            "SELECT pair_id, decision, reviewer, decided_at FROM linked.review_decisions "
            "WHERE decision_id = ?",
            [decision_id],
        ).fetchall()
        if held:
            if tuple(held[0]) != (pair, decision, reviewer, at):
                raise _fail(
                    name, i, "decision_id was already imported with another decision",
                    "decision_id_reused",
                )  # fmt: skip
            skipped += 1
            continue
        out.append((decision_id, pair, identity, decision, reviewer, reason or None, at))
    return out, sum(1 for fields in data if fields), skipped


def _destination(path: Path, folder_name: str, tag: str) -> Path:
    """Where `path` goes: `<its folder>/<folder_name>/<name>`, never over an earlier file."""
    folder = path.parent / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    return folder / f"{path.stem}.{tag}{path.suffix}" if dest.exists() else dest


def import_file(
    con: duckdb.DuckDBPyConnection, path: Path | str, now: dt.datetime | None = None
) -> dict:
    """Import one decisions file: checked whole, applied in one transaction (or not at all), then
    moved to `processed/` (or, when bad, to `rejected/` beside `<name>.error.txt`).  Returns
    `{file, status, rows, applied, skipped, error, stored_path}`; never raises for a bad file."""
    path = Path(path)
    import_id = "I" + uuid.uuid4().hex[:12]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result: dict = {"file": path.name, "status": "processed", "rows": None, "applied": 0,
                    "skipped": 0, "error": None}  # fmt: skip
    try:
        decisions, result["rows"], result["skipped"] = check_file(con, path, now)
    except DecisionsFileError as exc:
        result.update(status="rejected", error=str(exc))
        decisions = []
    dest = _destination(path, PROCESSED if not result["error"] else REJECTED, import_id)
    with transaction(con):
        for decision_id, pair, identity, decision, reviewer, reason, when in decisions:
            review.insert_decision(
                con, decision_id, pair, identity, decision, reviewer, reason, when
            )
            con.execute(
                "INSERT INTO linked.review_decision_imports VALUES (?, ?)", [decision_id, import_id]
            )
        con.execute(
            "INSERT INTO linked.review_imports (import_id, file_name, file_sha256, status, "
            "n_rows, n_applied, n_skipped, error, stored_path, imported_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [import_id, path.name, digest, result["status"], result["rows"], len(decisions),
             result["skipped"], result["error"], str(dest), at],
        )  # fmt: skip
    result["applied"] = len(decisions)
    if result["error"]:  # the reason first: a moved file never lacks its reason
        dest.with_name(dest.name + ".error.txt").write_text(result["error"] + "\n", "utf-8")
    path.replace(dest)
    result["stored_path"] = str(dest)
    return result


def import_inbox(
    con: duckdb.DuckDBPyConnection, inbox: Path | str, now: dt.datetime | None = None
) -> dict:
    """Import every waiting `link_decisions_*.csv` of `inbox` (oldest first, then by name; a
    missing folder holds none).
    Figures: `imported_files`, `imported_decisions`, `skipped_decisions`, `rejected_files`, and
    per file its status and error (file, row, rule; never a value)."""
    inbox = Path(inbox)
    files = sorted(
        (p for p in (inbox.glob(FILE_GLOB) if inbox.is_dir() else ()) if p.is_file()),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
    )
    results = [import_file(con, p, now) for p in files]
    ok = [r for r in results if r["status"] == "processed"]
    return {
        "imported_files": len(ok),
        "imported_decisions": sum(r["applied"] for r in ok),
        "skipped_decisions": sum(r["skipped"] for r in ok),
        "rejected_files": len(results) - len(ok),
        "files": [{k: r[k] for k in ("file", "status", "applied", "skipped", "error")}
                  for r in results],
    }  # fmt: skip
